// Command kstatus reads one Kubernetes object (JSON or YAML) on stdin and prints its computed
// kstatus as JSON: {"status": "Current", "message": "...", "conditions": [...]}.
//
// Tests use it to ask "is this resource ready?" with the upstream rules instead of
// re-implementing them per kind in Python.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type verdict struct {
	Status     string             `json:"status"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions"`
}

func main() {
	out, err := run(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(2)
	}
	fmt.Println(string(out))
}

func run(in io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(in)
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	// YAMLToJSON accepts JSON unchanged, so one path serves both input forms.
	doc, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing object: %w", err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(doc); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	res, err := status.Compute(obj)
	if err != nil {
		return nil, fmt.Errorf("computing status: %w", err)
	}
	conds := res.Conditions
	if conds == nil {
		conds = []status.Condition{} // keep the JSON field a list, never null
	}
	return json.Marshal(verdict{Status: res.Status.String(), Message: res.Message, Conditions: conds})
}
