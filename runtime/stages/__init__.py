"""The pipeline's stages, one module each, in the order frames pass them:
capture → detect (+ crop) → infer (batched) → track (+ smooth, render) → write.

Each stage is a class whose ``run()`` is one thread's loop (several threads for capture and detection);
``fer_engine.runtime.pipeline`` builds them, joins them with ``scheduling.Channel`` and runs them.
"""
