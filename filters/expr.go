package filters

import (
	"errors"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
)

// costLimit bounds what one evaluation of a filter may cost (CEL cost
// units), so no expression can stall a worker.
const costLimit = 1_000_000

// Input is what a filter expression sees.
type Input struct {
	// Type is ADDED, MODIFIED or DELETED.
	Type         string
	Object       map[string]any
	OldObject    map[string]any // nil unless modified
	ChangedPaths []string
}

// expr is a compiled, type-checked CEL filter.
type expr struct {
	src string
	prg cel.Program
}

// ExprError is a compile error with its position inside the expression
// (1-based line and column).
type ExprError struct {
	Line, Column int
	Msg          string
}

func (e *ExprError) Error() string { return fmt.Sprintf("column %d: %s", e.Column, e.Msg) }

var env = func() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("type", cel.StringType),
		cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType),
		cel.Variable("changedPaths", cel.ListType(cel.StringType)),
		ext.Strings(),
	)
	if err != nil {
		panic(err) // static declarations: cannot fail
	}
	return e
}()

// CompileExpr parses and type-checks src; the result must be a bool.
func CompileExpr(src string) (*expr, error) {
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		errs := iss.Errors()
		if len(errs) > 0 {
			loc := errs[0].Location
			msgs := make([]string, 0, len(errs))
			for _, e := range errs {
				msgs = append(msgs, e.Message)
			}
			return nil, &ExprError{Line: loc.Line(), Column: loc.Column() + 1, Msg: strings.Join(msgs, "; ")}
		}
		return nil, &ExprError{Line: 1, Column: 1, Msg: iss.Err().Error()}
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, &ExprError{Line: 1, Column: 1, Msg: fmt.Sprintf("the expression must be a bool, not %s", ast.OutputType())}
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, &ExprError{Line: 1, Column: 1, Msg: err.Error()}
	}
	return &expr{src: src, prg: prg}, nil
}

// errEval wraps runtime errors of a filter (a missing field, the cost
// limit): the change then does not match.
var errEval = errors.New("filter evaluation failed")

// Match evaluates the expression. On a runtime error it returns false and
// an error wrapping errEval.
func (x *expr) Match(in Input) (bool, error) {
	var old any
	if in.OldObject != nil {
		old = in.OldObject
	}
	paths := in.ChangedPaths
	if paths == nil {
		paths = []string{}
	}
	out, _, err := x.prg.Eval(map[string]any{
		"type": in.Type, "object": in.Object, "oldObject": old, "changedPaths": paths,
	})
	if err != nil {
		return false, fmt.Errorf("%w: %s: %v", errEval, x.src, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%w: %s: result %v is not a bool", errEval, x.src, out.Value())
	}
	return b, nil
}

// String is the source.
func (x *expr) String() string { return x.src }
