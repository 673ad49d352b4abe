# probes against scikit-learn on 16 processes at the defaults (+ the Newton finish in float64 on CUDA)
run probe_parity.txt python3 -m benchmarks.probe_parity --device cuda --sklearn-jobs 16 --mazes 64
# the store's writer alone (no forward) with as many bytes as the 10-step capture, against one plain thread
run writer29.txt python3 -m benchmarks.writer --gb 29 --steps 10 --sites 30 --repeats 1 --scratch /tmp \
    --modes thread,inline
