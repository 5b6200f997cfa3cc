"""Conformance class 5 (MultiDatastream) is optional and not implemented."""

import pytest


@pytest.mark.skip(reason="MultiDatastream (STA 1.1 optional extension) is not implemented")
def test_multidatastream():
    pass
