import os

# Real Keras is a test-only reference; it runs on the CPU torch backend.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
