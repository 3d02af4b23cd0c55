package main

import "time"

// edit is one change of a planted bug: find (exactly once in file) becomes replace.
type edit struct{ file, find, replace string }

// plantedBug is a bug of the kind one of the soak's invariants judges
// (e2e/soak): `mutate-hand -soak` builds the plugin with it and runs a short
// soak, which must fail that invariant. The unit tests catch most of these
// too; the point is that the soak, judging only from outside, would catch
// them if they had not.
type plantedBug struct {
	name      string
	invariant int // 1 to 5, as the soak's report numbers them
	edits     []edit
	// seed and duration are the soak's schedule: one whose faults give the
	// bug its chance to show (named in why).
	seed     uint64
	duration time.Duration
	why      string
}

// leaseBuilt is where pathTokenRead has a token to hand out: the per-read
// leaks are planted after it.
const leaseBuilt = "\tresp := b.Secret(secretTokenType).Response(data, leaseData(src, tok))\n"

// ciSeed is the soak's "ci" run (e2e/soak/soak_test.go): in one minute a
// leader killed, a step-down, a plugin killed, and Mirakl answering 503,
// hanging and refusing.
const ciSeed = 20261217

var plantedBugs = []plantedBug{
	{
		name: "lease as long as the token's whole life", invariant: 1,
		edits: []edit{{"path_token.go",
			"left := max(tok.remaining(b.now()).Truncate(time.Second), time.Second)",
			"left := max(tok.lifetime().Truncate(time.Second), time.Second)"}},
		seed: ciSeed, duration: time.Minute,
		why: "every cached read after a token's first second gets a lease that outlives it",
	},
	{
		name: "a role write with verify=false keeps the old audience's token", invariant: 2,
		edits: []edit{{"path_roles.go",
			"	} else {\n		mount.roles.loaded.Delete(role)\n	}\n",
			"	}\n"}},
		seed: plantedRoleWriteSeed, duration: 3 * time.Minute,
		why: "the schedule moves a role to its other audience without verify; reads go on getting the old audience's token",
	},
	{
		name: "readers wait for the refresh once it is due", invariant: 3,
		edits: []edit{{"path_token.go",
			"if cached == nil || !cached.servable(now) {",
			"if cached == nil || cached.remaining(now) < refreshPoint(src, cached) {"}},
		seed: ciSeed, duration: time.Minute,
		why: "during an outage, reads fail while the cached token has up to half its life left",
	},
	{
		name: "the gate ignores its backoff", invariant: 4,
		edits: []edit{{"gate.go",
			"	case !passed(now, g.reopensAt):\n		return false, false, g.closedLocked(g.reopensAt)\n",
			""}},
		seed: plantedOutageSeed, duration: 3 * time.Minute,
		why: "during an outage each attempt follows the last as soon as it ends, not on the gate's schedule",
	},
	{
		name: "refresh ahead from a token's first second", invariant: 4,
		edits: []edit{{"path_token.go",
			"	return tok.reusableFor(src.minTTL + refreshAheadMargin)\n",
			"	return tok.lifetime()\n"}},
		seed: ciSeed, duration: time.Minute,
		why: "while Mirakl answers, each read that finds no request in flight starts one",
	},
	{
		name: "each read keeps 32 KiB", invariant: 5,
		edits: []edit{
			{"path_token.go",
				"var errNotConfigured = errors.New(\"not configured\")\n",
				"var errNotConfigured = errors.New(\"not configured\")\n\nvar keptPerRead [][]byte\n"},
			{"path_token.go",
				leaseBuilt,
				leaseBuilt +
					"	keptPerRead = append(keptPerRead, []byte(strings.Repeat(\"x\", 32<<10)))\n"},
			{"path_token.go", "\t\"net/http\"\n", "\t\"net/http\"\n\t\"strings\"\n"},
		},
		seed: ciSeed, duration: time.Minute,
		why: "a leak that grows with reads (a cache never evicted): about 1 MiB a second at the soak's 30 reads a second",
	},
	{
		name: "each read leaves a goroutine behind", invariant: 5,
		edits: []edit{{"path_token.go",
			leaseBuilt,
			leaseBuilt +
				"	go func() { <-b.alive.Done() }()\n"}},
		seed: ciSeed, duration: time.Minute,
		why: "a goroutine per read that waits for the mount's end: 30 a second, little memory each",
	},
}

// plantedRoleWriteSeed's three-minute schedule moves a role to its other
// audience with verify=false near its end (planned at t+2m18s; played at
// about t+2m49s, after the faults before it), and no fault after it replaces the
// plugin process or the mount (either would load the role afresh). A search
// of the schedules found it; a short schedule packs its cluster faults close.
const plantedRoleWriteSeed = 471

// plantedOutageSeed's three-minute schedule has Mirakl failing while tokens
// are due for a refresh (a 429 of 15s from t+49s caught the bug): the soak's
// readers refresh each token as soon as it is due, so an outage window that
// falls between refresh points finds no token that wants one, and nothing
// knocks at the gate. The one-minute "ci" schedule missed this bug so.
const plantedOutageSeed = 5
