# The miniature's world (python -m miniature.world configs/miniature/world.py): one family of word problems, a
# number changed k = 1 to 4 times, so that k is a difficulty dial (a tiny model solves a step it can copy and look
# up; four in a row it gets right less often) and held-out accuracy is about solving, not only about the box.
# The low-quality web loses reasoning content (exercises without solutions, results without the work, wrong
# results), not only spelling; the instruction data asks for a boxed answer in the RL template's own words.
mix = {"chain1": 1.0, "chain2": 2.0, "chain3": 2.0, "chain4": 2.0}
chain_start = 12                 # numbers a ~1M-parameter model learns to copy and add within the budget:
chain_operand = 4                # starts up to 12, changes of 1-4, totals up to 20
chain_total = 20
eval = 600                       # held out: enough that a 4-point difference shows (a paired bootstrap's interval)
instruct = 800
instruct_math = 0.6              # of the instruction data, problems asked to be boxed (the rest: general requests)
slip = 0.2
noise = 0.3                      # surface damage of low-quality pages, on top of their poorer content:
lq_exercises = 0.2               # exercises without solutions,
lq_skip = 0.4                    # results without the work,
lq_wrong = 0.15                  # wrong results
