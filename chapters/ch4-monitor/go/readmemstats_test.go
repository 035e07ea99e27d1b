// The Go side of the sample-cost comparison: what the seed's monitor pays
// per sample, runtime.ReadMemStats, with a 10 MB heap and 101 goroutines
// (the seed's kind of process). capture.sh runs it beside the Rust bench.
//
// Besides Go's usual wall-clock ns/op it reports cpu-ns/op, the process's
// CPU time per call, which is what the Rust bench measures: other work on a
// shared machine does not inflate it.
package readmemstats

import (
	"runtime"
	"runtime/metrics"
	"syscall"
	"testing"
	"time"
)

var heap [][]byte

func processCPUTime() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		panic(err)
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

func BenchmarkReadMemStats(b *testing.B) {
	heap = nil // the benchmark function runs several times: keep 10 MB, not more
	for i := 0; i < 10; i++ {
		heap = append(heap, make([]byte, 1<<20))
	}
	stop := make(chan struct{})
	for i := 0; i < 100; i++ {
		go func() { <-stop }()
	}
	defer close(stop)

	var stats runtime.MemStats
	b.ResetTimer()
	start := processCPUTime()
	for i := 0; i < b.N; i++ {
		runtime.ReadMemStats(&stats)
	}
	cpu := processCPUTime() - start
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(stats.HeapAlloc), "heap-bytes")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
}

// runtime/metrics.Read of the three numbers leakscope's counting allocator
// and tokio give: live heap bytes, live heap objects, goroutines. Samples
// are allocated once, as the package documentation advises.
func BenchmarkMetricsRead(b *testing.B) {
	heap = nil
	for i := 0; i < 10; i++ {
		heap = append(heap, make([]byte, 1<<20))
	}
	stop := make(chan struct{})
	for i := 0; i < 100; i++ {
		go func() { <-stop }()
	}
	defer close(stop)

	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/objects:objects"},
		{Name: "/sched/goroutines:goroutines"},
	}
	b.ResetTimer()
	start := processCPUTime()
	for i := 0; i < b.N; i++ {
		metrics.Read(samples)
	}
	cpu := processCPUTime() - start
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(samples[0].Value.Uint64()), "heap-bytes")
	b.ReportMetric(float64(samples[2].Value.Uint64()), "goroutines")
}
