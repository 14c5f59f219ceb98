"""ispbench: reproduce, compare and learn RL-driven camera image signal processing.

The package holds the ISP operations (:mod:`ispbench.ops`), datasets (:mod:`ispbench.data`),
tasks (:mod:`ispbench.tasks`), methods (:mod:`ispbench.methods`) and the notebook runner
(:mod:`ispbench.runner`) behind the book.
"""

__version__ = "0.1.0"
