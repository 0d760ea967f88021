"""The paper's published numbers, for tables that put ours beside them.

Source: Lee, Lee, Kim, Kim, Park, Lee, Shin, "Efficient LLM Collaboration via Planning",
arXiv 2506.11578 (v4, May 2026; TMLR 2026), Tables 3, 5, 8, 9, 11 and 13, as restated in
the team's method notes. Accuracy in percent, cost in USD per million problems; None where
the paper gives no number.
"""

from __future__ import annotations

# the paper's small+large pairs, by this project's pair names (conf/pair/)
PAIRS = ("exaone2.4b+gpt-4o", "exaone2.4b+gpt-4o-mini", "qwen1.5b+gpt-4o", "qwen1.5b+gpt-4o-mini")
# the pair of every ablation (Tables 8, 9, 11, 13)
ABLATION_PAIR = "exaone2.4b+gpt-4o-mini"

# method -> (accuracy, cost) per pair in PAIRS order; methods without a cope method keep
# their paper names
TABLE3_MATH500 = {
    "small_single": [(52.8, None), (52.8, None), (49.0, None), (49.0, None)],
    "small_majority": [(65.2, None), (65.2, None), (58.0, None), (58.0, None)],
    "large": [(75.2, 5025), (73.8, 355), (75.2, 5025), (73.8, 355)],
    "MoT cascade (vote)": [(72.4, 3017), (70.6, 224), (71.4, 5150), (71.6, 327)],
    "MoT cascade (verify)": [(73.0, 3021), (72.2, 250), (72.6, 5046), (72.8, 319)],
    "ABC": [(74.4, 4297), (72.4, 304), (72.6, 4723), (72.0, 298)],
    "FrugalGPT": [(68.0, 4163), (65.6, 298), (68.2, 5472), (69.4, 349)],
    "cope": [(75.8, 2766), (74.4, 212), (75.2, 3725), (74.0, 285)],
}

# MBPP: "small multi" (candidates filtered on the visible tests) stands where majority is
TABLE5_MBPP = {
    "small_single": [(42.2, None), (42.2, None), (38.6, None), (38.6, None)],
    "small_majority": [(57.2, None), (57.2, None), (54.2, None), (54.2, None)],
    "large": [(64.0, 4889), (57.6, 276), (64.0, 4889), (57.6, 276)],
    "MoT cascade": [(64.6, 2706), (59.2, 159), (62.2, 2263), (57.4, 147)],
    "ABC": [(63.2, 1267), (59.4, 80), (62.6, 1542), (59.2, 96)],
    "FrugalGPT": [(63.6, 4012), (53.4, 240), (59.4, 5029), (57.2, 493)],
    "cope": [(66.4, 1279), (62.2, 77), (66.2, 1469), (61.4, 94)],
}

# Table 8, stages: method -> (accuracy, cost)
TABLE8_STAGES = {
    "large": (73.8, 355),
    "cope": (74.4, 212),
    "cope_s1s2": (71.8, 50),
    "cope_s2s3": (73.4, 248),
}

# Table 9, votes n -> (accuracy, accuracy on the problems where consensus was reached)
TABLE9_VOTES = {4: (71.4, 78.5), 8: (74.4, 84.1), 32: (74.4, 85.7)}

# Table 11, (tau1, tau2) -> (resolved at S1, S2, S3 of 500; accuracy; cost)
TABLE11_THRESHOLDS = {
    (0.5, 0.5): ((312, 72, 116), 70.0, 173),
    (0.5, 0.75): ((326, 37, 137), 70.8, 175),
    (0.75, 0.5): ((204, 150, 146), 74.4, 212),
    (0.75, 0.75): ((205, 96, 199), 74.2, 258),
}

# Table 13, five seeds: method -> ((accuracy mean, std), (cost mean, std))
TABLE13_SEEDS = {
    "large": ((73.8, 0.93), (355, 3.4)),
    "cope": ((74.4, 0.88), (207, 6.0)),
}
