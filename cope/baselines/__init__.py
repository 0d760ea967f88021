"""Baselines that need more than stage configuration: FrugalGPT's learned scorer.

MoT cascade (vote and verify) and ABC are pure configurations of the stage engine
(conf/method/mot_vote.yaml, mot_verify.yaml, abc.yaml).
"""
