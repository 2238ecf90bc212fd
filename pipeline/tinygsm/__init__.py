"""TinyGSM-style math: word problems with Python solutions, verified by execution."""
