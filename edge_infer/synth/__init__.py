"""The synthetic camera world: scenes with known ground truth, and the mAP yardstick.

Modules, in the order data flows through them:

- :mod:`~edge_infer.synth.shapes`   -- one drawing function per object class (sprite + mask)
- :mod:`~edge_infer.synth.scenes`   -- backgrounds, placement with bounded occlusion, camera effects
- :mod:`~edge_infer.synth.dataset`  -- COCO-format image splits (train / val / calib)
- :mod:`~edge_infer.synth.video`    -- camera files (H.264, MJPEG) with per-frame ground truth
- :mod:`~edge_infer.synth.evaluate` -- COCO mAP@0.5 and mAP@0.5:0.95 in numpy
- :mod:`~edge_infer.synth.detect_eval` -- runs a detector over a dataset and scores it

Everything but ``evaluate`` needs OpenCV; nothing here is imported by ``import edge_infer``.
"""
