package metrics

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// gather reads back what m writes for /metrics with the Prometheus
// project's own parser, as a scraper would.
func gather(t testing.TB, m *Metrics) []*dto.MetricFamily {
	t.Helper()
	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatalf("/metrics is not valid text exposition: %v", err)
	}
	return slices.Collect(maps.Values(fams))
}
