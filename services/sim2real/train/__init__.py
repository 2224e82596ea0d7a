"""Training: the 1-channel ResNet policy, trained on a datagen dataset into a checkpoint."""
