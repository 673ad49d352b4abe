# the store's writer beside a stand-in forward holding the GIL: wakes per 256 MiB (thread), per chunk (thread@0), inline
run writer.txt python3 -m benchmarks.writer --gb 4 --steps 10 --sites 30 --repeats 1 --scratch /tmp --forward-ms 620 \
    --modes thread,thread@0,inline
# probes against scikit-learn on 16 processes, the tighter Newton finish, and where our time goes
run probe_parity.txt python3 -m benchmarks.probe_parity --device cuda --sklearn-jobs 16 --mazes 64 --newton-tol 1e-5 \
    --profile 25
# capture of every block's stream at 10 steps against its floor
run bench.txt python3 -m interp.cli bench --config wan1.3b --device cuda --steps 10 --repeats 2 --only sampling \
    --capture-dtype float16,float8_e4m3:token --scratch /tmp --out "$D/bench.json"
