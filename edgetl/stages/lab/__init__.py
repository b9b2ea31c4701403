"""The device lab: the user's own devices reached over SSH (devices.toml), measured with
edgetl's device side there, reported and gated on the host."""
