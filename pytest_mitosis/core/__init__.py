"""The pure core: the exceptions users see, canonical fingerprints of values, and the rules on results.

Owns :mod:`.errors` (one exception class per phase), :mod:`.fingerprint` (a value's exact,
process-independent description), :mod:`.tree_text` (such a description read back: a short
text, where two differ), :mod:`.rules` (drift limits, hypotheses, reproduction tolerance, how a
metric becomes a number or a series), :mod:`.series` (which points of a long series are kept:
the kernel's records and the report's charts) and :mod:`.processes` (is a pid alive, on which machine;
finding and stopping the processes a kernel started). Everything else builds on these.

May import: the standard library only (``numpy`` is recognised by duck typing, never
imported). Never pytest, never another stage of the package.
"""
