"""Files: Keras weight files (``.weights.h5``) and whole-model files (``.keras``)."""
