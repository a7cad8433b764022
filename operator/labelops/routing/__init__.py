"""Which campaign a pool's labeler gets next: pure decisions, no I/O.

skills.py resolves a labeler's skills from the pool (groups, members); fair_share.py picks the
campaign (priority tiers, then weighted fair share over a decaying window, never a campaign the
labeler is blocked in or lacks a skill for). The pool router does the I/O around them.
"""
