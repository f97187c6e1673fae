package dashboard

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteDOT writes the graph in Graphviz's DOT language: a node per
// workload (dashed for stand-ins, a diamond for a split Service), an edge
// per traffic edge labelled with its rate, success rate, p99 and a
// padlock, and a dashed edge per split with its weight.
func WriteDOT(w io.Writer, g Graph) error {
	b := bufio.NewWriter(w)
	fmt.Fprintln(b, "digraph mesh {")
	fmt.Fprintln(b, "  rankdir=LR;")
	fmt.Fprintln(b, `  node [shape=box, style="rounded"];`)
	for _, n := range g.Nodes {
		attrs := fmt.Sprintf("label=%s", dotQuote(nodeLabel(n, g.Namespace == "")))
		switch n.Kind {
		case KindUnmeshed, KindExternal:
			attrs += `, style="rounded,dashed"`
		case KindService:
			attrs += ", shape=diamond"
		}
		if c := healthColour(n.Inbound.SuccessRate); c != "" {
			attrs += ", color=" + c
		}
		fmt.Fprintf(b, "  %s [%s];\n", dotQuote(n.ID), attrs)
	}
	for _, e := range g.Edges {
		attrs := "label=" + dotQuote(edgeLabel(e))
		if c := healthColour(e.SuccessRate); c != "" {
			attrs += ", color=" + c
		}
		fmt.Fprintf(b, "  %s -> %s [%s];\n", dotQuote(e.Source), dotQuote(e.Target), attrs)
	}
	for _, s := range g.Splits {
		for _, t := range s.Targets {
			fmt.Fprintf(b, "  %s -> %s [style=dashed, label=%s];\n", dotQuote(s.Service), dotQuote(t), dotQuote(fmt.Sprintf("weight %d (%.0f%%)", s.Weight, s.Percent)))
		}
	}
	fmt.Fprintln(b, "}")
	return b.Flush()
}

// nodeLabel is a node's name, with its namespace when every namespace is shown.
func nodeLabel(n Node, all bool) string {
	if all && n.Namespace != "" {
		return n.Namespace + "/" + n.Name
	}
	return n.Name
}

// edgeLabel is "🔒 12.3 rps · 99.50% · p99 ≤50ms", parts left out when unknown.
func edgeLabel(e Edge) string {
	parts := []string{fmt.Sprintf("%.1f rps", e.RPS)}
	if e.SuccessRate != nil {
		parts = append(parts, fmt.Sprintf("%.2f%%", 100**e.SuccessRate))
	}
	if e.P99 != nil {
		parts = append(parts, fmt.Sprintf("p99 ≤%gms", *e.P99))
	}
	l := strings.Join(parts, " · ")
	if e.Secured {
		l = "🔒 " + l
	}
	return l
}

// healthColour is the colour of a success rate: green at 99% or more,
// orange at 95%, red below; "" without traffic.
func healthColour(rate *float64) string {
	switch {
	case rate == nil:
		return ""
	case *rate >= 0.99:
		return "green"
	case *rate >= 0.95:
		return "orange"
	}
	return "red"
}

// dotQuote is s as a DOT quoted string: backslashes and quotes escaped,
// line breaks as \n (names come from the cluster and from requests).
func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}
