"""fer_engine: real-time facial emotion recognition, from FER2013 training to edge deployment.

This folder is the root of the ``fer_engine`` namespace. It holds only the contracts every part shares
(labels, the model's preprocessing spec, the user-error type), so that importing it pulls in nothing
heavy: ``fer_engine.runtime`` must stay torch-free.
"""

__version__ = "0.1.0"
