package api

import (
	"encoding/json"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
)

// fitProvider decides which providers may run a job: the one it asked
// for, whose contract its params must then fit (LTX Studio takes its
// params as they are; the LTX-2 API checks them, see ltxapi.ParseParams),
// or, when it asked for none, any provider ("") if the params fit the
// LTX-2 API too and LTX Studio alone otherwise.
func fitProvider(typ string, params json.RawMessage, asked string, bad *[]errs.FieldError) string {
	_, problems := ltxapi.ParseParams(typ, params)
	switch asked {
	case provider.NameLTXAPI:
		for _, p := range problems {
			field := "params"
			switch {
			case p.Field != "":
				field = "params." + p.Field
			case typ != "video":
				field = "type"
			}
			*bad = append(*bad, errs.FieldError{Field: field, Message: p.Message})
		}
		return asked
	case "":
		if len(problems) == 0 {
			return ""
		}
		return provider.NameLTXStudio
	default:
		return asked
	}
}
