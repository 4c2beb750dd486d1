package console

import (
	"bytes"
	"fmt"
	"html"
	"strconv"

	"github.com/poolgate/poolgate/internal/scheduler"
)

// Chart geometry, in SVG user units.
const (
	chartW     = 720
	chartLeft  = 48
	chartRight = 12
	flowTop    = 28
	flowH      = 140
	queueTop   = 212
	queueH     = 80
	chartH     = 320
)

// Colours are the Okabe–Ito palette: distinguishable with colour blindness.
const (
	colStarted  = "#0072B2"
	colFinished = "#D55E00"
	colQueue    = "#009E73"
	colGrid     = "#d0d4da"
	colText     = "#333"
)

// chartSVG draws jobs started and finished per minute (top) and queue depth
// (bottom) over mins. Only numbers and fixed labels reach the drawing, but
// every text is escaped anyway.
func chartSVG(mins []scheduler.Minute) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="t d">`,
		chartW, chartH, chartW, chartH)
	b.WriteString(`<title id="t">Jobs started and finished per minute, and queue depth, over the last hour</title>`)
	var started, finished, queued int
	maxFlow, maxQueue := 1, 1
	for _, m := range mins {
		started += m.Started
		finished += m.Finished
		queued = m.Queued
		maxFlow = max(maxFlow, m.Started, m.Finished)
		maxQueue = max(maxQueue, m.Queued)
	}
	fmt.Fprintf(&b, `<desc id="d">%s</desc>`, html.EscapeString(fmt.Sprintf(
		"In the last %d minutes %d jobs started and %d finished; %d are queued now.", len(mins), started, finished, queued)))
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>`, chartW, chartH)
	maxFlow, maxQueue = evenCeil(maxFlow), evenCeil(maxQueue)
	panel(&b, flowTop, flowH, maxFlow, "jobs per minute")
	panel(&b, queueTop, queueH, maxQueue, "queued")
	line(&b, mins, flowTop, flowH, maxFlow, colStarted, "", func(m scheduler.Minute) int { return m.Started })
	line(&b, mins, flowTop, flowH, maxFlow, colFinished, "6 3", func(m scheduler.Minute) int { return m.Finished })
	line(&b, mins, queueTop, queueH, maxQueue, colQueue, "", func(m scheduler.Minute) int { return m.Queued })
	// Legend and time axis.
	legend(&b, chartLeft, 14, colStarted, "", "started")
	legend(&b, chartLeft+110, 14, colFinished, "6 3", "finished")
	legend(&b, chartLeft+230, 14, colQueue, "", "queue depth")
	if len(mins) > 0 {
		text(&b, chartLeft, chartH-6, "start", mins[0].Start.UTC().Format("15:04")+" UTC")
		text(&b, chartW-chartRight, chartH-6, "end", mins[len(mins)-1].Start.UTC().Format("15:04"))
	}
	b.WriteString(`</svg>`)
	return b.Bytes()
}

func panel(b *bytes.Buffer, top, h, maxV int, label string) {
	for _, f := range []int{0, 1, 2} {
		y := top + h - h*f/2
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1"/>`, chartLeft, y, chartW-chartRight, y, colGrid)
		text(b, chartLeft-6, y+4, "end", strconv.Itoa(maxV*f/2))
	}
	text(b, chartW-chartRight, top-6, "end", label)
}

func line(b *bytes.Buffer, mins []scheduler.Minute, top, h, maxV int, colour, dash string, val func(scheduler.Minute) int) {
	if len(mins) == 0 {
		return
	}
	step := float64(chartW-chartLeft-chartRight) / float64(max(len(mins)-1, 1))
	b.WriteString(`<polyline fill="none" stroke-width="2" stroke="` + colour + `"`)
	if dash != "" {
		b.WriteString(` stroke-dasharray="` + dash + `"`)
	}
	b.WriteString(` points="`)
	for i, m := range mins {
		x := float64(chartLeft) + step*float64(i)
		y := float64(top+h) - float64(h)*float64(val(m))/float64(maxV)
		fmt.Fprintf(b, "%.1f,%.1f ", x, y)
	}
	b.WriteString(`"/>`)
}

func legend(b *bytes.Buffer, x, y int, colour, dash, label string) {
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"`, x, y-4, x+24, y-4, colour)
	if dash != "" {
		b.WriteString(` stroke-dasharray="` + dash + `"`)
	}
	b.WriteString(`/>`)
	text(b, x+30, y, "start", label)
}

func text(b *bytes.Buffer, x, y int, anchor, s string) {
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="%s" font-family="sans-serif" font-size="12" fill="%s">%s</text>`,
		x, y, anchor, colText, html.EscapeString(s))
}

// evenCeil rounds an axis maximum up to an even number of at least 2, so
// the middle grid line has a whole label.
func evenCeil(v int) int {
	v = max(v, 2)
	return v + v%2
}
