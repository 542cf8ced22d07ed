"""Files: Keras weight files (``.weights.h5``)."""
