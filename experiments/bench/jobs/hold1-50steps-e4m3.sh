# 8-bit storage at 50 steps with the sites that fit the disk: 10 blocks' streams (24 GB in e4m3)
run bench-50steps.txt python3 -m interp.cli bench --config wan1.3b --device cuda --steps 50 --repeats 1 --warmup 0 \
    --only sampling --sites 'blocks.[0-9].hook_resid_post' --capture-dtype float8_e4m3:token --scratch /tmp \
    --out "$D/bench-wan1.3b-h200-50steps-e4m3.json"
# the store's writer beside a stand-in forward holding the GIL, against one plain thread: where 1.24x goes
run writer.txt python3 -m benchmarks.writer --gb 4 --steps 10 --sites 30 --repeats 1 --scratch /tmp --forward-ms 620
