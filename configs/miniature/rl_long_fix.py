# The miniature's GRPO from the 'long' branch with the paper's remedies for long chain-of-thought's instability:
# the conversation template (the instruction data's turn, which ends after the answer) and a progressive length
# limit that starts tighter and ends at configs/miniature/rl.py's, so its final evaluation is as the plain arm's.
# Given after configs/miniature/rl.py, whose settings it changes:
#   python rl.py configs/miniature/rl.py configs/miniature/rl_long_fix.py --init_from=out/miniature/long/hf ...
template = "conversation"
max_response_len = {0: 112, 5: 144}
