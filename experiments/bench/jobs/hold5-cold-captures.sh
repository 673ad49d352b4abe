# where the bench's captures lose their time: the store profiled in every round, each file's removal timed apart
run bench.txt python3 -m interp.cli bench --config wan1.3b --device cuda --steps 10 --repeats 2 --only sampling \
    --capture-dtype float16,float8_e4m3:token --scratch /tmp --out "$D/bench.json"
# the same captures back to back with the bench's other samplings between them
run profile_between.txt python3 -m benchmarks.capture_profile --config wan1.3b --device cuda --steps 10 --repeats 3 \
    --dtype float16 --between bare,trajectory,read
# probes: where one fit's time goes, phase by phase
run probe_parity.txt python3 -m benchmarks.probe_parity --device cuda --sklearn-jobs 16 --mazes 64 --phases \
    --no-before
