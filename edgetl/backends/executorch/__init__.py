"""ExecuTorch with the XNNPACK delegate: a `.pte` program lowered from torch.export."""
