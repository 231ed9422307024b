"""Dataset readers, safe image loading and the training manifest."""
