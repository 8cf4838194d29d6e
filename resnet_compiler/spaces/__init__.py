"""Design spaces, as the RegNet papers use them (Radosavovic et al. 2019, 2020): a spec plus a
`space:` section of distributions and constraints; `sample` draws distinct designs from it without
torch, `sweep` trains them as Ray Tune trials, `analyze` compares sweeps by their error EDFs.

Modules: distributions (pycls's samplers), space (the file and its checks), regnet_screen (pycls's
stage rule for a batch of draws) and regnet_cost (a complexity estimate), which rejection consults
before compiling, sample (rejection sampling),
files (designs.csv, results.csv, run folders), sweep (Ray Tune), analysis (EDFs, KS) and report
(the HTML page), commands (the command lines).
"""
