"""Training: the ResNet policy over depth and validity, trained on a datagen dataset into a checkpoint."""
