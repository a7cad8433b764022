// Command argocd-health runs an Argo CD resource health check (Lua) the way Argo CD does:
// in gopher-lua, with the same few libraries opened, the object bound to the global `obj`,
// and the returned table read as {status, message}. A script that leans on a library Argo
// CD does not open (string, math, io) works in a stock Lua but fails here, as in Argo CD.
//
//	argocd-health DIR          run DIR/health.lua against each case of DIR/health_test.yaml
//	                           (Argo CD's fixture format); print the results as JSON; exit 1
//	                           when any case differs from its expectation
//	argocd-health -script F    run script F against one object (YAML or JSON) read on stdin
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// Argo CD gives a health script one second; a loop that never ends is a failed check.
const scriptTimeout = time.Second

// The statuses Argo CD accepts from a health script.
var healthStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type fixture struct {
	Tests []struct {
		HealthStatus health `json:"healthStatus"`
		InputPath    string `json:"inputPath"`
	} `json:"tests"`
}

type result struct {
	InputPath string  `json:"inputPath"`
	Expected  health  `json:"expected"`
	Actual    *health `json:"actual,omitempty"`
	Error     string  `json:"error,omitempty"`
	Pass      bool    `json:"pass"`
}

func main() {
	script := flag.String("script", "", "health script to run against one object read on stdin")
	flag.Parse()
	var err error
	switch {
	case *script != "" && flag.NArg() == 0:
		err = runOne(*script, os.Stdin, os.Stdout)
	case *script == "" && flag.NArg() == 1:
		err = runFixtures(flag.Arg(0), os.Stdout)
	default:
		err = errors.New("usage: argocd-health DIR | argocd-health -script FILE < object.yaml")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(1)
	}
}

func runOne(scriptPath string, in io.Reader, out io.Writer) error {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	hs, err := evaluate(string(script), raw)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(hs)
}

var errMismatch = errors.New("some cases did not match their expected health")

func runFixtures(dir string, out io.Writer) error {
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		return err
	}
	spec, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		return err
	}
	var fx fixture
	if err := yaml.UnmarshalStrict(spec, &fx); err != nil {
		return fmt.Errorf("health_test.yaml: %w", err)
	}
	if len(fx.Tests) == 0 {
		return errors.New("health_test.yaml has no tests")
	}
	results := make([]result, 0, len(fx.Tests))
	failed := false
	for _, tc := range fx.Tests {
		r := result{InputPath: tc.InputPath, Expected: tc.HealthStatus}
		raw, err := os.ReadFile(filepath.Join(dir, tc.InputPath))
		if err == nil {
			r.Actual, err = evaluate(string(script), raw)
		}
		if err != nil {
			r.Error = err.Error()
		}
		r.Pass = r.Actual != nil && *r.Actual == tc.HealthStatus
		failed = failed || !r.Pass
		results = append(results, r)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		return err
	}
	if failed {
		return errMismatch
	}
	return nil
}

// evaluate runs script with obj bound to the decoded object and returns its verdict.
func evaluate(script string, rawObject []byte) (*health, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(rawObject, &obj); err != nil {
		return nil, fmt.Errorf("parsing object: %w", err)
	}
	L := newArgoState()
	defer L.Close()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return nil, fmt.Errorf("script failed: %w", err)
	}
	table, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("script returned %s, not a table", L.Get(-1).Type())
	}
	hs := &health{
		Status:  lua.LVAsString(table.RawGetString("status")),
		Message: lua.LVAsString(table.RawGetString("message")),
	}
	if !healthStatuses[hs.Status] {
		return nil, fmt.Errorf("script returned unknown health status %q", hs.Status)
	}
	return hs, nil
}

// newArgoState opens only what Argo CD opens for health scripts: base, package, table and
// an os library reduced to the clock (no files, no processes, no environment).
func newArgoState() *lua.LState {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage,
		lua.BaseLibName: lua.OpenBase,
		lua.TabLibName:  lua.OpenTable,
		lua.OsLibName:   lua.OpenOs,
	} {
		L.Push(L.NewFunction(open))
		L.Push(lua.LString(name))
		L.Call(1, 0)
	}
	osLib := L.GetGlobal(lua.OsLibName).(*lua.LTable)
	safeOs := L.NewTable()
	for _, fn := range []string{"time", "date", "clock", "difftime"} {
		safeOs.RawSetString(fn, osLib.RawGetString(fn))
	}
	L.SetGlobal(lua.OsLibName, safeOs)
	// `require("os")` must hand out the reduced library too.
	L.SetField(L.GetField(L.GetGlobal("package"), "loaded"), lua.OsLibName, safeOs)
	return L
}

// toLua turns decoded JSON into Lua values: objects and arrays become tables (arrays
// 1-based), numbers become Lua numbers, null becomes nil.
func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, item := range x {
			t.RawSetString(k, toLua(L, item))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, item := range x {
			t.Append(toLua(L, item))
		}
		return t
	case string:
		return lua.LString(x)
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	default:
		return lua.LNil
	}
}
