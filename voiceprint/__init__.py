"""Voice enrollment and verification for the call-center IVR (issue 5).

Layers: ``api``/``cli`` over ``service`` over ``models``; the signal-processing
modules (``audio``, ``speech``, ``backends``, ``calibration``, ``fingerprint``)
know nothing of the database or of gRPC.
"""
