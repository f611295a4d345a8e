"""ppbe_jobs: the background job system of the PPBE application, built on jobq.

Planning, Programming, Budgeting and Execution work that must not block a
budget analyst: reports, notifications, budget calculations, exports and
imports, run by workers in three tiers (critical, standard, bulk).
"""

__version__ = "0.1.0"
