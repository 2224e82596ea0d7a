"""Export: a training checkpoint to ONNX (FP32) and an INT8 QDQ model, each checked and manifested."""
