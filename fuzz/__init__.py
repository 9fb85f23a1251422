"""
Coverage-guided fuzz targets for smtpsts (atheris); run with ``python fuzz/run.py``.
"""
