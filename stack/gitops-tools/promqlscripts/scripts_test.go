// Package promqlscripts runs PromQL test scripts in Prometheus's own format (promqltest:
// `load` series, `eval instant at <t> <expr>`, expected samples) with the real PromQL
// engine. Tests of the chart's alert rules write such scripts from the rendered rules, so an
// alert is checked by evaluating it, not by reading it.
//
//	go test -c -o promql-scripts ./promqlscripts
//	PROMQL_SCRIPTS=DIR ./promql-scripts -test.v     # runs DIR/*.test, one subtest each
package promqlscripts

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/prometheus/promql/promqltest"
)

func TestScripts(t *testing.T) {
	dir := os.Getenv("PROMQL_SCRIPTS")
	if dir == "" {
		t.Fatal("PROMQL_SCRIPTS must name a directory of *.test scripts")
	}
	scripts, err := filepath.Glob(filepath.Join(dir, "*.test"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no *.test scripts in %s (%v)", dir, err)
	}
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	for _, script := range scripts {
		t.Run(filepath.Base(script), func(t *testing.T) {
			body, err := os.ReadFile(script)
			if err != nil {
				t.Fatal(err)
			}
			promqltest.RunTest(t, string(body), engine)
		})
	}
}
