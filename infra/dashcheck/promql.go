package main

// The -promql mode: what each dashboard query reads, as Prometheus' own parser sees it, so
// the tests can hold metric and label names against what the services really expose.

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// LabelUse is a set of label names a query relies on, and the metrics that must carry them:
// the matchers of one selector, or a `by`/`without`/`on`/`ignoring` list over the metrics
// beneath it.
type LabelUse struct {
	Labels  []string `json:"labels"`
	Metrics []string `json:"metrics"`
	Clause  string   `json:"clause"`
}

// Analysis is what one expression reads. ResultLabels lists the labels of its result
// series when the expression fixes them (an aggregation `by`, a histogram_quantile over
// one); it is null when they are whatever labels the selected series carry.
type Analysis struct {
	Error        string     `json:"error,omitempty"`
	Metrics      []string   `json:"metrics"`
	Uses         []LabelUse `json:"uses"`
	ResultLabels []string   `json:"resultLabels"`
}

func sortedSet(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func metricsBeneath(node parser.Node) []string {
	found := map[string]bool{}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
			found[vs.Name] = true
		}
		return nil
	})
	return sortedSet(found)
}

// resultLabels: nil means "unknown: the labels of the selected series pass through".
func resultLabels(node parser.Node) []string {
	switch n := node.(type) {
	case *parser.NumberLiteral, *parser.StringLiteral:
		return []string{}
	case *parser.ParenExpr:
		return resultLabels(n.Expr)
	case *parser.UnaryExpr:
		return resultLabels(n.Expr)
	case *parser.StepInvariantExpr:
		return resultLabels(n.Expr)
	case *parser.AggregateExpr:
		if n.Without {
			return nil
		}
		switch n.Op {
		case parser.TOPK, parser.BOTTOMK, parser.LIMITK, parser.LIMIT_RATIO:
			return resultLabels(n.Expr)
		}
		grouping := append([]string{}, n.Grouping...)
		if n.Op == parser.COUNT_VALUES {
			if s, ok := n.Param.(*parser.StringLiteral); ok {
				grouping = append(grouping, s.Val)
			}
		}
		sort.Strings(grouping)
		return grouping
	case *parser.Call:
		switch n.Func.Name {
		case "histogram_quantile":
			inner := resultLabels(n.Args[1])
			if inner == nil {
				return nil
			}
			out := []string{}
			for _, l := range inner {
				if l != "le" {
					out = append(out, l)
				}
			}
			return out
		case "label_replace", "label_join":
			inner := resultLabels(n.Args[0])
			if inner == nil {
				return nil
			}
			if dst, ok := n.Args[1].(*parser.StringLiteral); ok {
				inner = append(append([]string{}, inner...), dst.Val)
				sort.Strings(inner)
			}
			return inner
		case "vector", "time", "scalar", "pi":
			return []string{}
		}
		for _, arg := range n.Args {
			if arg.Type() == parser.ValueTypeVector || arg.Type() == parser.ValueTypeMatrix {
				return resultLabels(arg)
			}
		}
		return []string{}
	case *parser.MatrixSelector:
		return resultLabels(n.VectorSelector)
	case *parser.SubqueryExpr:
		return resultLabels(n.Expr)
	case *parser.BinaryExpr:
		lhsVector := n.LHS.Type() == parser.ValueTypeVector
		rhsVector := n.RHS.Type() == parser.ValueTypeVector
		switch {
		case lhsVector && rhsVector:
			if n.VectorMatching != nil && n.VectorMatching.Card == parser.CardOneToMany {
				return resultLabels(n.RHS)
			}
			return resultLabels(n.LHS)
		case lhsVector:
			return resultLabels(n.LHS)
		case rhsVector:
			return resultLabels(n.RHS)
		}
		return []string{}
	}
	return nil
}

func analyse(expr string) Analysis {
	result := Analysis{Metrics: []string{}, Uses: []LabelUse{}}
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		result.Error = err.Error()
		return result
	}
	result.Metrics = metricsBeneath(node)
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			names := map[string]bool{}
			for _, m := range n.LabelMatchers {
				if m.Name != labels.MetricName {
					names[m.Name] = true
				}
			}
			if len(names) > 0 {
				result.Uses = append(result.Uses, LabelUse{
					Labels: sortedSet(names), Metrics: []string{n.Name}, Clause: "selector"})
			}
		case *parser.AggregateExpr:
			if len(n.Grouping) > 0 {
				clause := "by"
				if n.Without {
					clause = "without"
				}
				result.Uses = append(result.Uses, LabelUse{
					Labels: append([]string{}, n.Grouping...), Metrics: metricsBeneath(n.Expr), Clause: clause})
			}
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				m := n.VectorMatching
				used := append(append([]string{}, m.MatchingLabels...), m.Include...)
				if len(used) > 0 {
					clause := "ignoring"
					if m.On {
						clause = "on"
					}
					result.Uses = append(result.Uses, LabelUse{
						Labels: used, Metrics: metricsBeneath(n), Clause: clause})
				}
			}
		}
		return nil
	})
	result.ResultLabels = resultLabels(node)
	return result
}

// analyseAll reads a JSON array of PromQL expressions and writes a JSON array of analyses.
func analyseAll(in io.Reader, out io.Writer) error {
	var exprs []string
	if err := json.NewDecoder(in).Decode(&exprs); err != nil {
		return fmt.Errorf("-promql reads a JSON array of PromQL expressions on stdin: %w", err)
	}
	analyses := make([]Analysis, 0, len(exprs))
	for _, expr := range exprs {
		analyses = append(analyses, analyse(expr))
	}
	encoder := json.NewEncoder(out)
	encoder.SetIndent("", "  ")
	return encoder.Encode(analyses)
}
