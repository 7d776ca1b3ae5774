"""The offline demo: tiny CLIP models trained on a procedural shape world, published
into a local Hugging Face cache, so the whole workflow runs without a GPU or the Hub.

- :mod:`clipdyn.demo.world`: the shape world (images, captions, evaluation sets;
  the "human" judgements in it are SYNTHETIC, from stated rules);
- :mod:`clipdyn.demo.train`: contrastive training with open_clip, checkpoints in
  open_clip_train's layout;
- :mod:`clipdyn.demo.build`: renders, trains and publishes the hub, writes
  ``demo-manifest.json``.

Command line: ``python -m clipdyn.demo build --hub DIR [--epochs 8] [--scale full|ci]``
and ``python -m clipdyn.demo more-epochs --hub DIR --n 2``.
"""
