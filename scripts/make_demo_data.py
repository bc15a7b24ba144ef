"""Write the demo bot's training data into training_data/ (deterministic; run from the repo root).

The demo is a bike shop, "Spoke & Chain", with five skills and a fallback:
  small-talk        qa        greetings, thanks, what the bot can do
  shop-faq          qa        questions about the shop, answered directly (no intents)
  review-sentiment  classify  the sentiment of a customer review
  product-writer    generate  a product description, prompts built from products.csv with a template
  booking-extract   extract   bike, service and day from a booking request, in the tutorial's format

    python scripts/make_demo_data.py

No row repeats a user message of the demo's conversation tests (training_data/conversations.yaml),
compared in lower case, words only, without a leading article: a generated row that would is left out.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import yaml

OUT = Path("training_data")
SEP, STOP = "\n\n###\n\n", " END"

FAQ = [
    ("When are you open?", ["What are your opening hours?", "What time do you open?", "When does the shop open?", "Are you open today?", "What are your hours?", "opening times?", "What time do you shut?", "what r ur hours", "Are you open on Fridays?",
                            "Until what time are you open?", "When do you close?", "What are your hours on Wednesday?", "Are you open on Saturday morning?",
                            "How early can I come in?", "Closing time?", "Are you open late on Tuesdays?", "What are the opening times during the week?"],
     "We are open Tuesday to Saturday, 9am to 6pm."),
    ("Are you open on Sunday?", ["Do you open on Sundays?", "Can I come by on Sunday?", "Is the shop open on Sunday?", "Sunday opening?", "Is the shop closed at the start of the week?", "Which days are you closed?", "What days are you shut?",
                                 "Are you open on Mondays?", "Can I visit on a Monday?", "Do you work on Sundays?", "Open on Sunday morning?"],
     "No, we are closed on Sundays and Mondays."),
    ("Where is the shop?", ["What is your address?", "Where are you located?", "How do I find the shop?", "Where can I find you?", "wheres the shop", "What street are you on?", "Directions to the shop please"],
     "We are at 12 Mill Lane, next to the river bridge."),
    ("How much is a basic service?", ["What does a tune-up cost?", "Price of a basic service?", "How much for a bike service?", "What do you charge for a service?", "how much is a service", "Cost of a yearly check-up?", "How much do you charge to service a bike?"],
     "A basic service costs 45 euros and takes one day."),
    ("How long does a repair take?", ["When will my bike be ready?", "How long do repairs take?", "How quickly can you fix my bike?", "What is the repair time?", "how long till my bike is fixed", "What's the usual turnaround for a repair?", "Is a repair done the same day?",
                                   "How long will you need my bike for?", "How many days do repairs take?"],
     "Most repairs are ready in two working days."),
    ("Can I return a product?", ["What is your return policy?", "Can I get a refund?", "How do returns work?", "Can I bring something back?", "can i return a helmet i bought", "Can I return an unused pump?", "Can I exchange a part?",
                                "Can I send back something I bought?", "I bought the wrong part, can I swap it?"],
     "Unused products can be returned within 30 days with the receipt."),
    ("Do you rent bikes?", ["Can I hire a bike?", "Do you have rental bikes?", "Is bike rental possible?", "How much is a rental bike?", "can i rent an e-bike", "What does it cost to hire a bike for a day?", "do u rent bikes for tourists"],
     "Yes, city bikes rent for 15 euros a day and e-bikes for 35 euros a day."),
    ("Do you repair e-bikes?", ["Can you fix electric bikes?", "Do you service e-bikes?", "Can you repair my e-bike motor?", "Electric bike repairs?", "do you fix bosch motors", "My e-bike battery is dead, can you help?", "Which e-bike brands do you service?"],
     "Yes, we service e-bikes from Bosch, Shimano and Yamaha."),
    ("How do I book a repair?", ["Can I make an appointment?", "How do I schedule a service?", "Do I need to book?", "How can I book a service?", "Is there a link for appointments?", "Can I book online?", "What number do I call to book?"],
     "Book online at spokeandchain.example/book or call 0123 456 789."),
    ("Do you offer a warranty?", ["Is there a guarantee on repairs?", "What warranty do repairs have?", "Are repairs guaranteed?", "Do repairs come with a warranty?", "Are parts covered after a repair?", "How long is the warranty on a repair?", "is labour covered by warranty"],
     "Every repair has a 6 month warranty on parts and labour."),
    ("Can I pay by card?", ["Which payment methods do you accept?", "Do you take credit cards?", "Can I pay with my phone?", "Is cash the only option?", "do u take mastercard", "Can I pay contactless?", "Do you accept debit cards?"],
     "We accept cash, all major cards and mobile payments."),
    ("Do you sell second-hand bikes?", ["Do you have used bikes?", "Can I buy a used bike?", "Any second-hand bikes for sale?", "Do you sell refurbished bikes?", "any used e-bikes for sale", "Are there any bargains on bikes?", "Do second-hand bikes have a warranty?"],
     "Yes, we sell checked second-hand bikes with a 3 month warranty."),
    ("Is there parking?", ["Where can I park?", "Do you have a car park?", "Can I park near the shop?", "Is parking available?", "is there a car park nearby", "Is it easy to park near you?", "can i park my van at the shop",
                           "Where do customers park?", "Do you have parking spaces for customers?"],
     "There is free parking behind the shop for 30 minutes."),
    ("Do you fit bike racks?", ["Can you install a car rack?", "Do you fit child seats?", "Can you mount a rack on my bike?", "Do you install accessories?", "Do you install lights I buy here?", "Can you put a basket on my bike?", "Do you charge for fitting a rack?"],
     "Yes, fitting a rack or a child seat is free when you buy it here."),
]

CAPABILITIES = ("Hello! I am the Spoke & Chain assistant. I answer questions about the shop, book repairs, "
                "read reviews and write product descriptions.")
SMALL_TALK = [
    ("Hello", ["Hi", "Hey there", "Good morning", "Hello there!", "Hi, anyone here?", "Good afternoon", "Hey!", "Morning!", "Howdy", "hello?"],
     "Hello! How can I help you with your bike today?"),
    ("What can you do?", ["Hello, what can you do?", "How can you help me?", "What are you able to do?", "What do you do?",
                          "Hi, what can I ask you?", "What can I ask?", "Help", "Tell me what you can do", "What are you good for?", "what kind of questions can you answer"],
     CAPABILITIES),
    ("Who are you?", ["Are you a robot?", "What are you?", "Am I talking to a person?", "Is this a bot?", "Is this an automated chat?", "Are you an AI?", "Who am I talking to?"],
     "I am the Spoke & Chain assistant, a bot that knows the shop and its bikes."),
    ("How are you?", ["How are you doing?", "How is it going?", "All good?", "How are things?", "how r u", "You doing ok?", "How's everything?"],
     "I am fine, thank you! How can I help with your bike?"),
    ("Thanks, bye", ["Thank you!", "Thanks a lot", "Goodbye", "Bye", "See you", "Thanks for your help, bye", "Cheers", "alright, goodbye", "Nothing else, thank you", "Talk to you later", "thank u",
                       "That's all, thanks", "ok, bye for now", "Thanks, that's everything", "Cheers, see you"],
     "You are welcome, see you soon at Spoke & Chain!"),
]
# Off-topic messages for calibrating the router's out-of-scope threshold (not seen in training).
OUT_OF_SCOPE = [
    "What is the capital of Australia?", "Can you recommend a good pasta recipe?", "Who won the football match last night?",
    "How do I change a car tyre?", "What is the meaning of life?", "Tell me a joke about cats.", "How tall is Mount Everest?",
    "Translate good night into Japanese.", "What is 17 times 23?", "Book me a flight to Lisbon.", "What is the best smartphone?",
    "How do I reset my wifi router?", "Write a poem about the sea.", "Who is the president of France?", "How do vaccines work?",
    "Can you order a pizza for me?", "What movies are showing tonight?", "How do I file my taxes?", "Is it going to snow in Oslo?",
    "What is the stock price of Apple?", "How do I learn to play the guitar?", "Recommend a good book to read.",
    "What is quantum computing?", "How far is the moon?", "Set an alarm for 7am.", "How do I cook rice?",
    "Which dog breed is the friendliest?", "What is the population of Brazil?", "Explain the rules of cricket.",
    "How do I fix a leaking tap?", "What time is it in Tokyo?", "Find me a cheap hotel in Rome.",
    "What are the symptoms of the flu?", "How do I make a website?", "Who painted the Mona Lisa?", "Play some jazz music.",
    "How many calories are in an apple?", "What's the exchange rate from dollars to euros?", "How do I grow tomatoes?",
    "Can you help me with my maths homework?", "What is the speed of light?", "Where can I buy concert tickets?",
    "Can you book me a haircut for Friday?", "My washing machine is broken, can you fix it?", "Reserve a hotel room for Saturday.",
    "How do I repair a hole in my jeans?",
]

REVIEWS = {
    "positive": [
        "The {thing} is {good} and the staff were {kind}.", "Really happy with my {thing}, {good}!",
        "{Kind} team, my {thing} was {good}.", "Great experience, the {thing} is {good}.",
        "I love the {thing}, {good} and worth the money.", "Fast service and a {good} {thing}, thank you!",
        "Top shop, my {thing} has never been better.", "Five stars, I would recommend them to anyone.", "So pleased with how they handled my {thing}.",
        "They sorted my {thing} quickly, brilliant.", "lovely people, my {thing} feels {good} now",
    ],
    "negative": [
        "The {thing} was {bad} and nobody helped.", "Very disappointed, my {thing} is {bad}.",
        "Avoid this shop, the {thing} was {bad}.", "Waited two weeks and the {thing} is still {bad}.",
        "Terrible service, the {thing} came back {bad}.", "I want a refund, the {thing} is {bad}.",
        "One star. The {thing} broke again after a week.", "Not happy, they charged far too much for the {thing}.", "rude staff and a {bad} {thing}",
        "My {thing} is {bad} again, really disappointed with the shop.", "Paid for a {thing} and it is still {bad}, not impressed.",
    ],
    "neutral": [
        "I picked up my {thing} today.", "The {thing} was ready on Tuesday as planned.",
        "Bought a {thing}, have not used it yet.", "The shop is next to the bridge, I went there for a {thing}.",
        "They replaced the {thing}, it took one day.", "Ordered a {thing}, it should arrive next week.",
        "Dropped off my {thing} this morning.", "The {thing} cost 40 euros.", "My partner bought the {thing} there in May.",
    ],
}
THINGS = ["bike", "repair", "helmet", "e-bike", "brake job", "wheel", "saddle", "chain", "service", "rental bike"]
GOOD = ["excellent", "perfect", "amazing", "really smooth", "fantastic"]
BAD = ["broken", "terrible", "worse than before", "badly done", "still squeaking"]
KIND = ["friendly", "helpful", "very kind", "patient"]

PRODUCTS = [
    ("Trail Runner 29", "mountain bike", "a light aluminium frame", "The Trail Runner 29 is a mountain bike with a light aluminium frame that climbs easily and stays steady on rough trails."),
    ("City Glide", "city bike", "a step-through frame", "The City Glide is a city bike with a step-through frame, easy to get on and comfortable for daily rides."),
    ("Volt Commuter", "e-bike", "a 500 Wh battery", "The Volt Commuter is an e-bike with a 500 Wh battery that takes you up to 100 km on a single charge."),
    ("Kid Spark 16", "children's bike", "stabiliser wheels", "The Kid Spark 16 is a children's bike with stabiliser wheels, a safe first bike for young riders."),
    ("Road Arrow", "road bike", "a carbon fork", "The Road Arrow is a road bike with a carbon fork that absorbs bumps and keeps you fast on long rides."),
    ("Fold Go", "folding bike", "a 10 second fold", "The Fold Go is a folding bike with a 10 second fold that fits under a desk or on a train."),
    ("Cargo Mate", "cargo bike", "a front box for two children", "The Cargo Mate is a cargo bike with a front box for two children, made for school runs and shopping."),
    ("Gravel Pro", "gravel bike", "wide 45 mm tyres", "The Gravel Pro is a gravel bike with wide 45 mm tyres that grip on dirt roads and roll well on tarmac."),
    ("Shield Helmet", "helmet", "a rear LED light", "The Shield Helmet is a helmet with a rear LED light that keeps you visible in traffic at night."),
    ("Aero Helmet", "helmet", "twelve air vents", "The Aero Helmet is a helmet with twelve air vents that keep your head cool on hot days."),
    ("Grip Lock", "bike lock", "a hardened steel chain", "The Grip Lock is a bike lock with a hardened steel chain that stops bolt cutters."),
    ("Beam 800", "front light", "an 800 lumen LED", "The Beam 800 is a front light with an 800 lumen LED that lights up dark country roads."),
    ("Comfort Saddle", "saddle", "a gel cushion", "The Comfort Saddle is a saddle with a gel cushion that makes long rides easier on the body."),
    ("Pannier Duo", "pannier bag", "a waterproof roll top", "The Pannier Duo is a pannier bag with a waterproof roll top that keeps your things dry in the rain."),
    ("Pump Max", "floor pump", "a pressure gauge", "The Pump Max is a floor pump with a pressure gauge so your tyres are always at the right pressure."),
    ("Tour Rack", "rear rack", "room for 25 kg", "The Tour Rack is a rear rack with room for 25 kg, strong enough for touring bags."),
    ("Mud Guard Set", "mudguards", "quick release clips", "The Mud Guard Set is a pair of mudguards with quick release clips that fit in seconds."),
    ("Kid Seat Plus", "child seat", "a five point harness", "The Kid Seat Plus is a child seat with a five point harness that keeps your child safe and secure."),
    ("Speed Computer", "bike computer", "built-in GPS", "The Speed Computer is a bike computer with built-in GPS that records every ride and shows the way."),
    ("Chain Clean Kit", "cleaning kit", "a biodegradable degreaser", "The Chain Clean Kit is a cleaning kit with a biodegradable degreaser that makes your chain shine again."),
    ("Urban E 2", "e-bike", "a belt drive", "The Urban E 2 is an e-bike with a belt drive that is quiet, clean and needs almost no maintenance."),
    ("Summit XC", "mountain bike", "full suspension", "The Summit XC is a mountain bike with full suspension that stays in control on steep descents."),
    ("Rain Jacket", "cycling jacket", "reflective stripes", "The Rain Jacket is a cycling jacket with reflective stripes that keeps you dry and seen."),
    ("Bottle Cage", "bottle cage", "a side entry", "The Bottle Cage is a bottle cage with a side entry that fits small frames."),
]

BIKES = {  # brand: models
    "trek": ["marlin", "domane"], "giant": ["talon", "defy"], "cube": ["kathmandu", "reaction"], "specialized": ["rockhopper", "sirrus"],
    "gazelle": ["ultimate", "orange"], "brompton": ["c line"], "cannondale": ["topstone", "quick"], "batavus": ["finez"],
    "scott": ["scale", "speedster"], "bianchi": ["via nirone"], "merida": ["big nine"], "canyon": ["grail"], "orbea": ["vector"],
    "kona": ["dew"], "focus": ["planet"], "ridley": ["kanzo"], "marin": ["fairfax"],
}
SERVICES = ["brake tune", "wheel truing", "chain replacement", "puncture repair", "full service", "gear adjustment", "battery check",
            "brake pad change", "tyre change", "spoke repair"]
WEEKDAYS = ["tuesday", "wednesday", "thursday", "friday", "saturday"]
DAYS = [*WEEKDAYS, "tomorrow", "next week", "next friday", "this thursday"]
# Booking messages by the entities they hold: whole requests, partial ones, the short answers a user gives to
# the bot's questions ("which day?"), and changes of mind. {bike} is a brand or a brand and model.
BOOKINGS = {
    ("bike", "service", "day"): [
        "Can I book a {service} for my {bike} {on_day}?", "My {bike} needs a {service}, could I bring it {on_day}?",
        "book a {service} for the {bike} {on_day}", "hi, could you do a {service} on my {bike} {on_day}?",
        "I'd like to drop off my {bike} {on_day} for a {service}", "Is there time {on_day} for a {service}? It's a {bike}.",
    ],
    ("bike", "service"): ["Please book my {bike} in for a {service}.", "Hi, my {bike} needs a {service}.", "{service} for my {bike} please"],
    ("bike", "day"): ["Can I bring my {bike} in {on_day}?", "I'd like to book my {bike} in {on_day}", "could you look at my {bike} {on_day}? it makes a noise"],
    ("service", "day"): ["I would like a {service} {on_day} please.", "Could you do a {service} {on_day}?"],
    ("bike",): ["Please book in my {bike}", "my {bike} needs looking at, can I book it in?", "it's a {bike}", "a {bike}", "my {bike}"],
    ("service",): ["I need a {service}", "Do you have a slot for a {service}?", "just a {service} please", "{service}", "a {service}",
                   "{service} please"],
    ("day",): ["Is there a repair slot {on_day}?", "{day}", "{on_day} please", "can we move it to {day}?", "{day} would suit me better",
               "change the booking to {day} please", "{day} works"],
}
NO_ENTITY = ["I would like to book an appointment.", "Can I book a repair slot?", "Do you have a free slot for a repair?",
             "I need to get my bike looked at.", "Please book me in.", "Can someone look at my bike soon?",
             "Could I get an appointment for a repair?", "I'd like an appointment, please.", "I want to book my bike in for a repair."]


def pair(prompt: str, answer: str) -> dict[str, str]:
    return {"prompt": prompt.strip() + SEP, "completion": " " + answer.strip() + STOP}


def _plain(text: str) -> str:
    """*text* as compared with the conversation tests: lower case, words only, no leading article."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return " ".join(words[1:] if words[:1] in (["a"], ["an"], ["the"]) else words)


def _tested() -> set[str]:
    """The user messages of the demo's conversation tests (every ``conversations*.yaml``), which no training or
    calibration row may repeat."""
    found = [c for path in sorted(OUT.glob("conversations*.yaml")) for c in yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]]
    return {_plain(turn["user"]) for c in found for turn in c.get("turns", [c])}


def write(name: str, rows: list[dict[str, str]]) -> None:
    kept = [row for row in rows if _plain(row["prompt"]) not in TESTED]
    with open(OUT / name, "w", encoding="utf-8") as handle:
        for row in kept:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    _written(name, len(kept), len(rows), "rows")


def _written(name: str, kept: int, made: int, unit: str) -> None:
    print(f"{OUT / name}: {kept} {unit}" + (f" ({made - kept} left out: a message of the conversation tests)" if kept < made else ""))


def questions(name: str, groups: list[tuple[str, list[str], str]], rng: random.Random) -> None:
    train, valid = [], []
    for question, paraphrases, answer in groups:
        asked = [question, *paraphrases]
        valid.append(pair(asked.pop(rng.randrange(1, len(asked))), answer))  # one unseen paraphrase each
        train += [pair(q, answer) for q in asked]
    rng.shuffle(train)
    write(f"{name}_train.jsonl", train)
    write(f"{name}_valid.jsonl", valid)


def reviews(rng: random.Random) -> None:
    rows = []
    for label, templates in REVIEWS.items():
        for template in templates:
            for _ in range(5):
                kind = rng.choice(KIND)
                text = template.format(thing=rng.choice(THINGS), good=rng.choice(GOOD), bad=rng.choice(BAD), kind=kind, Kind=kind.capitalize())
                rows.append(pair(text, label))
    rows = list({r["prompt"]: r for r in rows}.values())
    rng.shuffle(rows)
    cut = len(rows) // 5
    write("review_sentiment_valid.jsonl", rows[:cut])
    write("review_sentiment_train.jsonl", rows[cut:])


def products() -> None:
    with open(OUT / "products.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "type", "detail", "description"])
        writer.writerows(PRODUCTS)
    print(f"{OUT / 'products.csv'}: {len(PRODUCTS)} rows")


def bookings(rng: random.Random) -> None:
    rows = []
    for kinds, templates in BOOKINGS.items():
        for template in templates:
            for _ in range(3):
                brand, service, day = rng.choice(list(BIKES)), rng.choice(SERVICES), rng.choice(DAYS)
                bike = f"{brand} {rng.choice(BIKES[brand])}" if rng.random() < 0.5 and "{bike}" in template else brand
                on_day = day if day.split()[0] in ("tomorrow", "next", "this") else f"on {day}"
                day_shown = day.capitalize() if day in WEEKDAYS else day
                text = template.format(bike=bike.title(), service=service, day=day_shown, on_day=on_day)
                text = text[0].upper() + text[1:]
                if rng.random() < 0.4:  # people type in lower case
                    text = text.lower()
                found = {"bike": [bike], "service": [service], "day": [day]}
                body = "\n".join(f"{k}:{found[k]!r}" for k in ("bike", "service", "day") if k in kinds)
                rows.append({"prompt": text + SEP, "completion": " " + body + "\n" + STOP})
    rows += [{"prompt": text + SEP, "completion": " no entity\n" + STOP} for text in NO_ENTITY]
    rows = list({r["prompt"]: r for r in rows}.values())
    rng.shuffle(rows)
    cut = len(rows) // 5
    write("booking_extract_valid.jsonl", rows[:cut])
    write("booking_extract_train.jsonl", rows[cut:])


TESTED = _tested()

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    rng = random.Random(7)
    questions("shop_faq", FAQ, rng)
    reviews(rng)
    products()
    bookings(rng)
    questions("small_talk", SMALL_TALK, rng)
    off_topic = [t for t in OUT_OF_SCOPE if _plain(t) not in TESTED]
    (OUT / "out_of_scope.txt").write_text("\n".join(off_topic) + "\n", encoding="utf-8")
    _written("out_of_scope.txt", len(off_topic), len(OUT_OF_SCOPE), "lines")
