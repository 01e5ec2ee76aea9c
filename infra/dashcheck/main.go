// Command grafana-dashboard-check decodes Grafana dashboards strictly with the Grafana
// Foundation SDK's own types (the schema Grafana publishes for its dashboard JSON) and
// prints one finding per line, with the file and the JSON path: a field Grafana does not
// know, a required field that is missing, a value of the wrong type, a panel type that has
// no schema in the SDK. It exits 1 when there are findings and 2 when it cannot read a file.
//
//	grafana-dashboard-check charts/muster/dashboards/*.json
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Finding is one thing Grafana would read differently from what the file says.
type Finding struct {
	File    string
	Path    string
	Message string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s: %s", f.File, f.Path, f.Message)
}

// The SDK names an unexpected field after the Go type that did not expect it
// ("panels[0].Panel: unexpected field 'foo'"); people want the field's own path.
var unexpected = regexp.MustCompile(`^unexpected field '(.*)'$`)

// jsonPath turns an SDK error path ("panels[0].options.legend") into "$.panels[0]...".
func jsonPath(sdkPath, message string) (string, string) {
	if m := unexpected.FindStringSubmatch(message); m != nil {
		parent := ""
		if i := strings.LastIndex(sdkPath, "."); i >= 0 {
			parent = sdkPath[:i]
		}
		sdkPath = strings.TrimPrefix(parent+"."+m[1], ".")
		message = "unknown field (Grafana's schema has no such field)"
	}
	if sdkPath == "" || sdkPath == "Dashboard" {
		return "$", message
	}
	return "$." + sdkPath, message
}

// fromSDK turns what a strict decode returned into findings. The SDK's decoders return
// their error list as an `error` even when it is empty, so an empty list means "all good".
func fromSDK(file, prefix string, err error) []Finding {
	var built cog.BuildErrors
	if !errors.As(err, &built) {
		var one *cog.BuildError
		if !errors.As(err, &one) {
			return []Finding{{File: file, Path: "$" + prefix, Message: err.Error()}}
		}
		built = cog.BuildErrors{one}
	}
	found := make([]Finding, 0, len(built))
	for _, e := range built {
		path := strings.TrimPrefix(prefix+"."+e.Path, ".")
		p, msg := jsonPath(path, e.Message)
		found = append(found, Finding{File: file, Path: p, Message: msg})
	}
	return found
}

// lineCol says where a syntax error is, for people editing the file by hand.
func lineCol(raw []byte, offset int64) (int, int) {
	line, col := 1, 1
	for i := int64(0); i < offset && i < int64(len(raw)); i++ {
		if raw[i] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

// check decodes one dashboard. Beyond the SDK's strict decode it also decodes each panel's
// fieldConfig strictly (the SDK's Panel decoder reads it leniently, apart from `custom`) and
// reports panel types without a schema, whose options the SDK would not check at all.
func check(file string, raw []byte) []Finding {
	var syntax *json.SyntaxError
	var generic map[string]json.RawMessage
	if err := json.Unmarshal(raw, &generic); err != nil {
		if errors.As(err, &syntax) {
			line, col := lineCol(raw, syntax.Offset)
			return []Finding{{File: file, Path: "$", Message: fmt.Sprintf(
				"not valid JSON at line %d, column %d: %s", line, col, syntax.Error())}}
		}
		return []Finding{{File: file, Path: "$", Message: "a dashboard is a JSON object: " + err.Error()}}
	}
	var findings []Finding
	board := dashboard.Dashboard{}
	if err := board.UnmarshalJSONStrict(raw); err != nil {
		findings = append(findings, fromSDK(file, "", err)...)
	}
	var panels []map[string]json.RawMessage
	if err := json.Unmarshal(generic["panels"], &panels); err != nil {
		return findings // the SDK has reported the shape of `panels` already
	}
	for i, panel := range panels {
		where := fmt.Sprintf(".panels[%d]", i)
		var kind string
		_ = json.Unmarshal(panel["type"], &kind)
		if kind == "row" || kind == "" {
			continue
		}
		if _, found := cog.ConfigForPanelcfgVariant(kind); !found {
			findings = append(findings, Finding{File: file, Path: "$" + where + ".type", Message: fmt.Sprintf(
				"panel type %q is not one Grafana ships (no schema for it in the Foundation SDK)", kind)})
		}
		if fieldConfig, ok := panel["fieldConfig"]; ok && string(fieldConfig) != "null" {
			source := dashboard.FieldConfigSource{}
			if err := source.UnmarshalJSONStrict(fieldConfig); err != nil {
				findings = append(findings, fromSDK(file, where+".fieldConfig", err)...)
			}
		}
	}
	return findings
}

const usage = `usage: grafana-dashboard-check DASHBOARD.json...
       grafana-dashboard-check -promql < expressions.json
Decodes each dashboard strictly with the Grafana Foundation SDK's types and prints one
finding per line (file: JSON path: what is wrong); exits 1 when there are any.
-promql reads a JSON array of PromQL expressions and prints what each one selects.`

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-promql" {
		if err := analyseAll(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "grafana-dashboard-check: %v\n", err)
			os.Exit(2)
		}
		return
	}
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	var findings []Finding
	for _, file := range os.Args[1:] {
		raw, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "grafana-dashboard-check: %v\n", err)
			os.Exit(2)
		}
		found := check(file, raw)
		sort.SliceStable(found, func(a, b int) bool { return found[a].Path < found[b].Path })
		findings = append(findings, found...)
	}
	for _, f := range findings {
		fmt.Println(f)
	}
	fmt.Fprintf(os.Stderr, "grafana-dashboard-check: %d finding(s) in %d dashboard(s)\n",
		len(findings), len(os.Args)-1)
	if len(findings) > 0 {
		os.Exit(1)
	}
}
