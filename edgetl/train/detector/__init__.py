"""Detection on a frozen backbone: its feature pyramid (pyramid.py), a small neck and an
anchor-free head (model.py), FCOS's assignment and losses (targets.py), training on cached
pyramids (fit.py)."""
