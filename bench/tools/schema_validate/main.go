// Command schema_validate times what kube-apiserver's schema validation of one
// RoutingTable update costs under each CRD variant of bench/tools/table_write.ts,
// without an API server and its noise: the same calls as the custom resource
// strategy's ValidateUpdate (ratcheting OpenAPI validation, embedded metadata,
// list types), from the same modules as the local cluster's kube-apiserver.
//
//	deno run -A bench/tools/table_write.ts --dump /tmp/tw --shapes 100x10 \
//	  --variants strings,strings-nopattern --drop service
//	cd bench/tools/schema_validate && go run . -dir /tmp/tw -shape 100x10 \
//	  -variants strings,strings-nopattern
//
// Prints one JSON line per variant: µs of CPU (the process's, run it with
// GOGC=off so that the collector's work is not counted) and bytes allocated per
// validation, min and median of rounds, the variants in a new random order
// each round; with an endpoint pattern, also the CPU ns of one match of it
// alone on the table's strings and which of Go's matchers runs it (one-pass,
// backtracker for programs of up to 500 instructions, else the NFA).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"regexp"
	"regexp/syntax"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/model"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apiserver/pkg/cel/common"
)

type variant struct {
	name       string
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	old, new   map[string]interface{}
	ns         []float64
	bytes      []float64
	pattern    *regexp.Regexp // the endpoint strings' pattern, if any
	endpoints  []string       // the new table's endpoint strings
	matchNs    []float64
}

func load(dir, name, shape string) (*variant, error) {
	raw, err := os.ReadFile(fmt.Sprintf("%s/%s.crd.json", dir, name))
	if err != nil {
		return nil, err
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := json.Unmarshal(raw, &crd); err != nil {
		return nil, err
	}
	internal := &apiextensions.JSONSchemaProps{}
	v1props := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v1props, internal, nil); err != nil {
		return nil, err
	}
	ss, err := structuralschema.NewStructural(internal)
	if err != nil {
		return nil, err
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(internal)
	if err != nil {
		return nil, err
	}
	v := &variant{name: name, structural: ss, validator: validator}
	if entries, ok := v1props.Properties["spec"].Properties["entries"]; ok && entries.Items != nil {
		if eps, ok := entries.Items.Schema.Properties["endpoints"]; ok && eps.Items != nil &&
			eps.Items.Schema != nil && eps.Items.Schema.Pattern != "" {
			v.pattern = regexp.MustCompile(eps.Items.Schema.Pattern)
		}
	}
	for _, which := range []string{"old", "new"} {
		raw, err := os.ReadFile(fmt.Sprintf("%s/%s.%s.%s.json", dir, name, shape, which))
		if err != nil {
			return nil, err
		}
		var obj map[string]interface{}
		if err := utiljson.Unmarshal(raw, &obj); err != nil { // numbers as int64, as the API server
			return nil, err
		}
		if which == "old" {
			v.old = obj
			continue
		}
		v.new = obj
		spec, _ := obj["spec"].(map[string]interface{})
		entries, _ := spec["entries"].([]interface{})
		for _, e := range entries {
			eps, _ := e.(map[string]interface{})["endpoints"].([]interface{})
			for _, s := range eps {
				if s, ok := s.(string); ok {
					v.endpoints = append(v.endpoints, s)
				}
			}
		}
	}
	return v, nil
}

// engine is the matcher Go's regexp runs re with on short inputs, and its program's size.
func engine(re *regexp.Regexp) (string, int) {
	parsed, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return "?", 0
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return "?", 0
	}
	// the field is unexported: only whether it is set is read
	if !reflect.ValueOf(re).Elem().FieldByName("onepass").IsNil() {
		return "onepass", len(prog.Inst)
	}
	if len(prog.Inst) <= 500 { // regexp's maxBacktrackProg
		return "backtrack", len(prog.Inst)
	}
	return "nfa", len(prog.Inst)
}

// match times the pattern alone on the table's endpoint strings; CPU ns per string.
func (v *variant) match() float64 {
	t0 := cpuTime()
	for k := 0; k < 20; k++ {
		for _, s := range v.endpoints {
			v.pattern.MatchString(s)
		}
	}
	return float64(cpuTime()-t0) / float64(20*len(v.endpoints))
}

// validate is the schema part of customResourceStrategy.ValidateUpdate; the number of errors.
func (v *variant) validate() int {
	correlated := common.NewCorrelatedObject(v.new, v.old, &model.Structural{Structural: v.structural})
	errs := apiservervalidation.ValidateCustomResourceUpdate(nil, v.new, v.old, v.validator,
		apiservervalidation.WithRatcheting(correlated))
	errs = append(errs, schemaobjectmeta.Validate(nil, nil, v.new, v.structural, false)...)
	if oldErrs := structurallisttype.ValidateListSetsAndMaps(nil, v.structural, v.old); len(oldErrs) == 0 {
		errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, v.structural, v.new)...)
	}
	return len(errs)
}

// cpuTime is the process's CPU time (user + system): on shared cores steadier than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(xs []float64) (float64, float64) {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[0], s[len(s)/2]
}

func main() {
	dir := flag.String("dir", "", "directory of table_write.ts --dump")
	shape := flag.String("shape", "100x10", "table shape")
	names := flag.String("variants", "strings,strings-nopattern", "variants, comma-separated")
	rounds := flag.Int("rounds", 20, "rounds")
	per := flag.Int("n", 20, "validations of each variant per round")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the rounds to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile to this file")
	flag.Parse()
	runtime.MemProfileRate = 64 * 1024
	var vs []*variant
	for _, name := range strings.Split(*names, ",") {
		v, err := load(*dir, name, *shape)
		if err != nil {
			fmt.Fprintln(os.Stderr, name+":", err)
			os.Exit(1)
		}
		if n := v.validate(); n != 0 {
			fmt.Fprintf(os.Stderr, "%s: %d validation errors\n", name, n)
			os.Exit(1)
		}
		vs = append(vs, v)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		defer func() {
			if f, err := os.Create(*memProfile); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				_ = f.Close()
			}
		}()
	}
	var ms runtime.MemStats
	for r := 0; r < *rounds; r++ {
		for _, i := range rand.Perm(len(vs)) {
			v := vs[i]
			runtime.GC()
			runtime.ReadMemStats(&ms)
			a0 := ms.TotalAlloc
			t0 := cpuTime()
			for k := 0; k < *per; k++ {
				v.validate()
			}
			d := cpuTime() - t0
			runtime.ReadMemStats(&ms)
			v.ns = append(v.ns, float64(d.Nanoseconds())/float64(*per))
			v.bytes = append(v.bytes, float64(ms.TotalAlloc-a0)/float64(*per))
			if v.pattern != nil && len(v.endpoints) > 0 {
				v.matchNs = append(v.matchNs, v.match())
			}
		}
	}
	for _, v := range vs {
		minNs, medNs := median(v.ns)
		_, medB := median(v.bytes)
		out := map[string]interface{}{
			"variant": v.name, "shape": *shape,
			"validateUsMin": int(minNs / 1000), "validateUsMedian": int(medNs / 1000),
			"allocKB": int(medB / 1024),
		}
		if len(v.matchNs) > 0 {
			minM, medM := median(v.matchNs)
			out["patternEngine"], out["patternInsts"] = engine(v.pattern)
			out["matchNsMin"], out["matchNsMedian"] = int(minM), int(medM)
		}
		line, _ := json.Marshal(out)
		fmt.Println(string(line))
	}
}
