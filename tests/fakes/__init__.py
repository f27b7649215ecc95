"""Fakes of processors' APIs: real HTTP servers that behave as the documented APIs do."""
