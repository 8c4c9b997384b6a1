"""Diagnoses of a supervised run: pure functions from what the supervisor saw (numdoctor.core
.facts, stacks, exit statuses, samples) to findings. `numdoctor run`, `numdoctor.isolate()`,
the Jupyter isolated cell, `probe`'s scenarios and the pytest plugin all come here."""
