"""`edgetl search`: the most accurate model that meets a latency and size budget on the
target: latency measured per architecture before anything is trained, heads trained on
cached features, INT8 through the guard, every choice on val."""
