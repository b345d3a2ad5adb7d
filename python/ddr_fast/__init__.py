"""ddr-fast from Python: DD-Ranking's scores (LRS, ARS) computed by the ddr-fast engine.

Switch a DD-Ranking script by changing its import::

    from ddr_fast.metrics import LabelRobustScoreHard   # was: from ddranking.metrics import ...

or call the functional API, :func:`evaluate`. Tensors (numpy arrays, torch tensors on any device,
anything with ``__dlpack__`` or the buffer protocol) go to the engine in memory, never through a
file. Long evaluations show progress, run without the GIL, and stop cleanly on Ctrl-C: finished
trainings are kept in the journal (``out_dir``) and the shared cache, so the same call resumes.
"""

from . import _core
from ._core import DdrFastError
from .config import Config
from ._evaluate import evaluate
from . import data, metrics

__version__ = _core.__version__

__all__ = ["Config", "DdrFastError", "data", "evaluate", "metrics", "__version__"]
