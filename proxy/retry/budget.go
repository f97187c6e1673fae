package retry

import (
	"sync"
	"time"
)

// BudgetConfig sizes a retry budget.
type BudgetConfig struct {
	// Ratio is how many retries each original request earns. Default: 0.2.
	Ratio float64
	// MinPerSecond is the retries allowed per second however few requests
	// there are (so that a quiet service can still retry). Default: 10.
	MinPerSecond float64
	// TTL is how long earned retries stay spendable. Default: 10s.
	TTL time.Duration
}

// DefaultBudget is the budget unless a Service overrides it.
var DefaultBudget = BudgetConfig{Ratio: 0.2, MinPerSecond: 10, TTL: 10 * time.Second}

// WithDefaults fills the zero fields with DefaultBudget's.
func (c BudgetConfig) WithDefaults() BudgetConfig {
	if c.Ratio == 0 {
		c.Ratio = DefaultBudget.Ratio
	}
	if c.MinPerSecond == 0 {
		c.MinPerSecond = DefaultBudget.MinPerSecond
	}
	if c.TTL <= 0 {
		c.TTL = DefaultBudget.TTL
	}
	return c
}

const budgetSlots = 10

// Budget is a retry budget: a retry spends a token; tokens are earned,
// Ratio for each original request and MinPerSecond continuously over time,
// and expire about TTL after they were earned (in tenths of the TTL), the
// oldest spent first. Retries therefore never exceed Ratio × requests +
// MinPerSecond × the time since the budget's start, and a quiet period cannot
// save up more than a TTL's worth. (A new budget has nothing to spend until
// its first tokens accrue: a tenth of a second at 10/s.) It is safe for
// concurrent use.
type Budget struct {
	cfg   BudgetConfig
	width time.Duration // of a slot

	// mu guards everything below.
	mu    sync.Mutex
	start time.Time
	slots [budgetSlots]slot
	last  int64 // the newest slot begun; -1 before the first
}

// slot holds the tokens earned in one TTL/budgetSlots of time.
type slot struct {
	index    int64 // which slot of time since start it is
	requests int
	spent    float64
}

// tokens are a slot's unspent tokens at now: its requests' share and the
// reserve accrued during its time so far.
func (b *Budget) tokens(s *slot, now time.Time) float64 {
	elapsed := now.Sub(b.start.Add(time.Duration(s.index) * b.width))
	elapsed = min(max(elapsed, 0), b.width)
	return b.cfg.MinPerSecond*elapsed.Seconds() + b.cfg.Ratio*float64(s.requests) - s.spent
}

// NewBudget returns a budget starting at now.
func NewBudget(cfg BudgetConfig, now time.Time) *Budget {
	cfg = cfg.WithDefaults()
	b := &Budget{cfg: cfg, width: cfg.TTL / budgetSlots, start: now, last: -1}
	for i := range b.slots {
		b.slots[i].index = -1 // not begun
	}
	return b
}

// Config returns the budget's configuration, defaults filled in.
func (b *Budget) Config() BudgetConfig { return b.cfg }

// Deposit records an original request at now.
func (b *Budget) Deposit(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	b.slots[b.last%budgetSlots].requests++
}

// Withdraw spends one retry at now if the budget allows it.
func (b *Budget) Withdraw(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	if b.available(now) < 1-1e-9 { // tolerate rounding in the sums
		return false
	}
	need := 1.0
	for i := b.last - budgetSlots + 1; i <= b.last && need > 0; i++ { // oldest first
		if i < 0 {
			continue
		}
		s := &b.slots[i%budgetSlots]
		if s.index != i {
			continue
		}
		take := max(min(b.tokens(s, now), need), 0)
		s.spent += take
		need -= take
	}
	return true
}

// Available is the number of retries the budget would allow at now.
func (b *Budget) Available(now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	return b.available(now)
}

// advance begins the slots up to now's; slots that fall out of the window
// take their unspent tokens with them.
func (b *Budget) advance(now time.Time) {
	cur := int64(0)
	if d := now.Sub(b.start); d > 0 {
		cur = int64(d / b.width)
	}
	for i := max(b.last+1, cur-budgetSlots+1); i <= cur; i++ {
		b.slots[i%budgetSlots] = slot{index: i}
	}
	b.last = max(b.last, cur)
}

func (b *Budget) available(now time.Time) float64 {
	var total float64
	for i := range b.slots {
		s := &b.slots[i]
		if s.index >= 0 && s.index > b.last-budgetSlots && s.index <= b.last {
			total += b.tokens(s, now)
		}
	}
	return total
}
