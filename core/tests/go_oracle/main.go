// The template oracle: renders test cases with Go's own text/template, the
// function map and the data shapes AES (Ambassador Edge Stack) gives its
// templates, so core/tests/go_template.rs can compare the Rust engine with Go
// byte for byte. Standard library only; test-time only (nothing of it goes
// into the module).
//
// Input (stdin): a JSON list of cases
//
//	{"template": "...", "kind": "header" | "body",
//	 "headers": [["name", "value"], ...],          // Add()ed to an http.Header
//	 "raw": "...", "signature": "...",
//	 "header_json": "{...}", "claims_json": "{...}", // decoded as jwt-go does
//	 "status": 401, "message": "...", "request_id": "...", "errors": 16 | null}
//
// Output (stdout): a JSON list, one per case:
//
//	{"parse_error": "...", "exec_error": "...", "do_not_set": bool, "out": base64}
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"text/template"
)

type input struct {
	Template   string      `json:"template"`
	Kind       string      `json:"kind"`
	Headers    [][2]string `json:"headers"`
	Raw        string      `json:"raw"`
	Signature  string      `json:"signature"`
	HeaderJSON string      `json:"header_json"`
	ClaimsJSON string      `json:"claims_json"`
	Status     int         `json:"status"`
	Message    string      `json:"message"`
	RequestID  string      `json:"request_id"`
	Errors     *int        `json:"errors"`
}

type output struct {
	ParseError string `json:"parse_error,omitempty"`
	ExecError  string `json:"exec_error,omitempty"`
	DoNotSet   bool   `json:"do_not_set,omitempty"`
	Out        []byte `json:"out"`
}

var errDoNotSet = errors.New("doNotSet")

// Header templates (injectRequestHeaders, errorResponse.headers): Go's
// builtins plus Sprig's hasKey and AES's doNotSet.
var headerFuncs = template.FuncMap{
	"hasKey": func(d map[string]interface{}, key string) bool {
		_, ok := d[key]
		return ok
	},
	"doNotSet": func() (string, error) { return "", errDoNotSet },
}

// bodyTemplate: Go's builtins plus json PREFIX VALUE.
var bodyFuncs = template.FuncMap{
	"json": func(prefix string, v interface{}) (string, error) {
		b, err := json.MarshalIndent(v, prefix, "\t")
		return string(b), err
	},
}

// errorData is AES's error data: every key is readable by name, and its JSON
// form shows message and status_code, and request_id on a 5xx.
type errorData map[string]interface{}

func (d errorData) MarshalJSON() ([]byte, error) {
	type shown struct {
		Message    interface{} `json:"message"`
		StatusCode interface{} `json:"status_code"`
		RequestID  interface{} `json:"request_id,omitempty"`
	}
	s := shown{Message: d["message"], StatusCode: d["status_code"]}
	if code, ok := d["status_code"].(int); ok && code/100 == 5 {
		s.RequestID = d["request_id"]
	}
	return json.Marshal(s)
}

// decode decodes a JSON object as jwt-go does (numbers float64).
func decode(text string) map[string]interface{} {
	var m map[string]interface{}
	if text == "" {
		return map[string]interface{}{}
	}
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		// jwt-go refuses such a token: no template runs.
		panic(fmt.Sprintf("claims: %v", err))
	}
	return m
}

func run(c input) (o output) {
	defer func() {
		if r := recover(); r != nil {
			o.ExecError = fmt.Sprintf("panic: %v", r)
		}
	}()
	header := http.Header{}
	for _, h := range c.Headers {
		header.Add(h[0], h[1])
	}
	var data interface{}
	funcs := headerFuncs
	if c.Kind == "body" {
		funcs = bodyFuncs
		var errVal interface{} = map[string]interface{}{}
		if c.Errors != nil {
			errVal = map[string]interface{}{"ValidationError": map[string]interface{}{"Errors": *c.Errors}}
		}
		data = errorData{
			"status_code": c.Status,
			"httpStatus":  c.Status,
			"message":     c.Message,
			"request_id":  c.RequestID,
			"requestId":   c.RequestID,
			"error":       errVal,
		}
	} else {
		data = map[string]interface{}{
			"token": map[string]interface{}{
				"Raw":       c.Raw,
				"Header":    decode(c.HeaderJSON),
				"Claims":    decode(c.ClaimsJSON),
				"Signature": c.Signature,
			},
			"httpRequestHeader": header,
		}
	}
	t, err := template.New("t").Funcs(funcs).Parse(c.Template)
	if err != nil {
		o.ParseError = err.Error()
		return o
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		if errors.Is(err, errDoNotSet) {
			o.DoNotSet = true
			return o
		}
		o.ExecError = err.Error()
		return o
	}
	o.Out = buf.Bytes()
	if o.Out == nil {
		o.Out = []byte{}
	}
	return o
}

func main() {
	var cases []input
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintf(os.Stderr, "oracle: %v\n", err)
		os.Exit(2)
	}
	outs := make([]output, len(cases))
	for i, c := range cases {
		outs[i] = run(c)
	}
	if err := json.NewEncoder(os.Stdout).Encode(outs); err != nil {
		fmt.Fprintf(os.Stderr, "oracle: %v\n", err)
		os.Exit(2)
	}
}
