-- wrk script: prints the whole latency distribution (milliseconds) after a run, for comparing
-- tails beyond wrk's --latency percentiles (docs/performance.md, "The machine's two speeds").
--   taskset -c 0 wrk -t1 -c64 -d10s -s bench/latency.lua http://127.0.0.1:18080/1k
done = function(summary, latency, requests)
  for _, p in ipairs({50, 90, 95, 98, 99, 99.5, 99.9, 99.99}) do
    io.write(string.format("p%s=%.3f ", p, latency:percentile(p) / 1000))
  end
  io.write(string.format("max=%.3f mean=%.3f sd=%.3f\n", latency.max / 1000, latency.mean / 1000, latency.stdev / 1000))
end
