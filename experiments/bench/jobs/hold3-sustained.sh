# capture of every block's stream at 10 steps against its floor (the disk's rate sustained over the capture's bytes)
run bench.txt python3 -m interp.cli bench --config wan1.3b --device cuda --steps 10 --repeats 2 --only sampling \
    --capture-dtype float16,float8_e4m3:token --scratch /tmp --out "$D/bench.json"
# probes against scikit-learn on 16 processes at the defaults (Newton to 1e-5, pinned copy, sparse CG checks)
run probe_parity.txt python3 -m benchmarks.probe_parity --device cuda --sklearn-jobs 16 --mazes 64
