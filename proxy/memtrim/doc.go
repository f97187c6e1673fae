// Package memtrim gives a quiet proxy's spare memory back to the kernel.
//
// Go's collector lets the heap grow to about twice what is live before it
// collects, and returns freed pages to the kernel slowly. For a sidecar
// that is busy for a moment and then idle for minutes (most of a node's
// proxies, most of the time), that slack is resident memory multiplied by
// every pod. A Trimmer watches how much the process allocates; once it has
// allocated enough since its last trim and then goes quiet, it collects and
// releases the free pages at once (runtime/debug.FreeOSMemory). A busy
// proxy is never trimmed (the collector paces itself there), and a quiet
// one at most once per burst of work.
package memtrim
