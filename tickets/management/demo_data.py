"""What the demo utility and its customers say: the setup tables and every text of `createdemo`.

The texts are written the way customers of real utilities write to them (see the seed articles:
Permenergosbyt's messengers, SCE's social profiles, LiveOps' social listening): short, with
typos, in their own language, about outages, bills, readings, tariffs, contracts, planned work
and debt. Placeholders in braces ({street}, {reading}, ...) are filled per conversation by
`tickets.management.demo`. Safety phrases are the ones `tickets.priority` knows, so those
tickets come out urgent; words that would trip the safety rule by accident ("горит",
"dega") are avoided in ordinary texts.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("ru", "pt", "lt", "en", "zh")
BRAND = "Demo Energy"
BRAND_HANDLE = "DemoEnergy"
OUTAGE_MAP = "https://status.demo-energy.example/outages"
PORTAL = "https://my.demo-energy.example"

# --------------------------------------------------------------------------- organisation

# slug, name, parent slug, description
TEAMS: list[tuple[str, str, str | None, str]] = [
    ("outages", "Outages & emergencies", None, "Power cuts, safety hazards, storm response."),
    ("billing", "Billing & payments", None, "Bills, payments, debt and payment plans."),
    (
        "meter-readings",
        "Meter readings",
        "billing",
        "Readings submitted by customers, estimated bills, meter faults.",
    ),
    (
        "contracts",
        "Contracts & tariffs",
        None,
        "New connections, moving house, change of owner, tariffs.",
    ),
]

# slug, name
SKILLS: list[tuple[str, str]] = [
    ("high-voltage", "High voltage"),
    ("billing", "Billing"),
    ("meters", "Meters"),
    ("contracts", "Contracts"),
    ("social-media", "Social media"),
]

# name, colour
TAGS: list[tuple[str, str]] = [
    ("storm", "#7c3aed"),
    ("safety", "#dc2626"),
    ("callback", "#0891b2"),
    ("vip", "#ca8a04"),
    ("complaint", "#ea580c"),
    ("payment-plan", "#16a34a"),
    ("medical", "#db2777"),
    ("moving-house", "#2563eb"),
    ("night-rate", "#4f46e5"),
    ("planned-work", "#64748b"),
    ("estimated-bill", "#a16207"),
    ("social", "#0ea5e9"),
    ("payment-reminder", "#65a30d"),
    ("duplicate", "#94a3b8"),
]


# username, first, last, role, teams, languages, capacity, presence, skills {slug: proficiency}
AGENTS: list[dict[str, Any]] = [
    {
        "username": "alice",
        "first": "Alice",
        "last": "Novak",
        "role": "agent",
        "teams": ["outages"],
        "languages": ["ru", "lt", "en"],
        "capacity": 15,
        "presence": "online",
        "skills": {"high-voltage": 4},
        "signature": "Alice, Outages & emergencies",
    },
    {
        "username": "bob",
        "first": "Bob",
        "last": "Martins",
        "role": "agent",
        "teams": ["billing", "meter-readings"],
        "languages": ["pt", "en", "zh"],
        "capacity": 15,
        "presence": "online",
        "skills": {"billing": 5, "meters": 3},
        "signature": "Bob, Billing & payments",
    },
    {
        "username": "dmitri",
        "first": "Dmitri",
        "last": "Sokolov",
        "role": "agent",
        "teams": ["outages", "meter-readings"],
        "languages": ["ru", "en"],
        "capacity": 12,
        "presence": "online",
        "skills": {"high-voltage": 5, "meters": 4},
        "signature": "Дмитрий, аварийная служба",
    },
    {
        "username": "rasa",
        "first": "Rasa",
        "last": "Kazlauskienė",
        "role": "agent",
        "teams": ["billing", "meter-readings", "contracts"],
        "languages": ["lt", "ru", "en"],
        "capacity": 20,
        "presence": "away",
        "skills": {"billing": 4, "meters": 4, "contracts": 3},
        "signature": "Rasa, klientų aptarnavimas",
    },
    {
        "username": "joao",
        "first": "João",
        "last": "Ferreira",
        "role": "agent",
        "teams": ["outages", "contracts"],
        "languages": ["pt", "en"],
        "capacity": 12,
        "presence": "online",
        "skills": {"high-voltage": 3, "contracts": 4},
        "signature": "João, apoio ao cliente",
    },
    {
        "username": "mei",
        "first": "Mei",
        "last": "Li",
        "role": "agent",
        "teams": ["outages", "contracts"],
        "languages": ["zh", "en"],
        "capacity": 10,
        "presence": "offline",
        "skills": {"contracts": 4},
        "signature": "李梅 客户服务",
    },
    {
        "username": "grace",
        "first": "Grace",
        "last": "O'Neill",
        "role": "agent",
        "teams": ["outages", "billing"],
        "languages": ["en", "pt"],
        "capacity": 15,
        "presence": "online",
        "skills": {"social-media": 5, "billing": 2},
        "signature": "Grace, social care team",
    },
    {
        "username": "carol",
        "first": "Carol",
        "last": "Reyes",
        "role": "supervisor",
        "teams": [],
        "languages": ["en", "ru", "lt"],
        "capacity": 5,
        "presence": "online",
        "skills": {"high-voltage": 3, "billing": 3, "social-media": 3},
        "signature": "Carol, shift supervisor",
    },
    {
        "username": "ada",
        "first": "Ada",
        "last": "Lindqvist",
        "role": "admin",
        "teams": [],
        "languages": ["en"],
        "capacity": 5,
        "presence": "offline",
        "skills": {},
        "signature": "",
    },
]

# kind, key, name, default team, credentials, settings
CHANNELS: list[tuple[str, str, str, str, dict[str, str], dict[str, Any]]] = [
    (
        "telegram",
        "tg-demoenergy",
        "Telegram @DemoEnergyBot",
        "outages",
        {"bot_token": "demo-000000:telegram-bot-token", "secret_token": "demo-telegram-secret"},
        {},
    ),
    (
        "whatsapp",
        "wa-demoenergy",
        "WhatsApp +370 5 200 0000",
        "outages",
        {
            "access_token": "demo-whatsapp-access-token",
            "app_secret": "demo-whatsapp-app-secret",
            "verify_token": "demo-whatsapp-verify",
            "phone_number_id": "demo-100000000000000",
        },
        {},
    ),
    (
        "messenger",
        "fb-demoenergy",
        "Facebook page Demo Energy",
        "billing",
        {
            "page_access_token": "demo-messenger-page-token",
            "app_secret": "demo-messenger-app-secret",
            "verify_token": "demo-messenger-verify",
        },
        {},
    ),
    (
        "instagram",
        "ig-demoenergy",
        "Instagram @demoenergy",
        "billing",
        {
            "page_access_token": "demo-instagram-page-token",
            "app_secret": "demo-instagram-app-secret",
            "verify_token": "demo-instagram-verify",
        },
        {},
    ),
    (
        "x",
        "x-demoenergy",
        "X @DemoEnergy",
        "outages",
        {
            "consumer_key": "demo-x-consumer-key",
            "consumer_secret": "demo-x-consumer-secret",
            "access_token": "demo-x-access-token",
            "access_token_secret": "demo-x-access-token-secret",
            "brand_handle": BRAND_HANDLE,
        },
        {
            "listening": {
                "handles": [f"@{BRAND_HANDLE}"],
                "hashtags": ["#demoenergy"],
                "require_trigger": True,
            }
        },
    ),
    (
        "viber",
        "viber-demoenergy",
        "Viber Demo Energy",
        "meter-readings",
        {"auth_token": "demo-viber-auth-token"},
        {},
    ),
    (
        "vk",
        "vk-demoenergy",
        "VK Demo Energy",
        "meter-readings",
        {
            "access_token": "demo-vk-access-token",
            "secret": "demo-vk-secret",
            "confirmation_code": "demo-vk-confirm",
            "group_id": "demo-200000000",
        },
        {},
    ),
    (
        "sms",
        "sms-demoenergy",
        "SMS +370 5 200 0001",
        "billing",
        {
            "account_sid": "demo-twilio-account-sid",
            "auth_token": "demo-twilio-auth-token",
            "from_number": "+37052000001",
        },
        {},
    ),
    (
        "email",
        "mail-support",
        "support@demo-energy.example",
        "billing",
        {
            "inbound_token": "demo-email-inbound-token",
            "from_address": "support@demo-energy.example",
        },
        {},
    ),
    (
        "widget",
        "web-chat",
        "Web chat on demo-energy.example",
        "contracts",
        {"allowed_origins": "https://demo-energy.example"},
        {},
    ),
]

# Which team a topic belongs to: the demo's stand-in for routing rules.
TOPIC_TEAMS = {
    "outage": "outages",
    "maintenance": "outages",
    "billing": "billing",
    "meter_reading": "meter-readings",
    "tariff": "contracts",
    "contract": "contracts",
}

# --------------------------------------------------------------------------- people and places

# (native, latin) pairs; the latin form builds e-mail addresses and handles.
NAMES: dict[str, dict[str, list[tuple[str, str]]]] = {
    "ru": {
        "f_first": [
            ("Ирина", "irina"),
            ("Ольга", "olga"),
            ("Наталья", "natalya"),
            ("Елена", "elena"),
            ("Татьяна", "tatyana"),
            ("Светлана", "svetlana"),
            ("Марина", "marina"),
            ("Анна", "anna"),
            ("Людмила", "lyudmila"),
            ("Юлия", "yulia"),
        ],
        "m_first": [
            ("Сергей", "sergey"),
            ("Андрей", "andrey"),
            ("Алексей", "aleksey"),
            ("Дмитрий", "dmitriy"),
            ("Михаил", "mikhail"),
            ("Владимир", "vladimir"),
            ("Николай", "nikolay"),
            ("Павел", "pavel"),
            ("Евгений", "evgeniy"),
            ("Игорь", "igor"),
        ],
        "f_last": [
            ("Ковалёва", "kovaleva"),
            ("Иванова", "ivanova"),
            ("Смирнова", "smirnova"),
            ("Кузнецова", "kuznetsova"),
            ("Попова", "popova"),
            ("Лебедева", "lebedeva"),
            ("Морозова", "morozova"),
            ("Волкова", "volkova"),
        ],
        "m_last": [
            ("Ковалёв", "kovalev"),
            ("Иванов", "ivanov"),
            ("Смирнов", "smirnov"),
            ("Кузнецов", "kuznetsov"),
            ("Попов", "popov"),
            ("Лебедев", "lebedev"),
            ("Морозов", "morozov"),
            ("Волков", "volkov"),
        ],
    },
    "pt": {
        "f_first": [
            ("Ana", "ana"),
            ("Maria", "maria"),
            ("Beatriz", "beatriz"),
            ("Inês", "ines"),
            ("Mariana", "mariana"),
            ("Fernanda", "fernanda"),
            ("Carla", "carla"),
            ("Juliana", "juliana"),
        ],
        "m_first": [
            ("João", "joao"),
            ("Carlos", "carlos"),
            ("Rafael", "rafael"),
            ("Tiago", "tiago"),
            ("Luís", "luis"),
            ("Paulo", "paulo"),
            ("Pedro", "pedro"),
            ("Miguel", "miguel"),
        ],
        "f_last": [
            ("Souza", "souza"),
            ("Pereira", "pereira"),
            ("Santos", "santos"),
            ("Oliveira", "oliveira"),
            ("Costa", "costa"),
            ("Rodrigues", "rodrigues"),
            ("Almeida", "almeida"),
            ("Ribeiro", "ribeiro"),
            ("Carvalho", "carvalho"),
            ("Gomes", "gomes"),
        ],
    },
    "lt": {
        "f_first": [
            ("Rūta", "ruta"),
            ("Aistė", "aiste"),
            ("Eglė", "egle"),
            ("Laima", "laima"),
            ("Jurgita", "jurgita"),
            ("Inga", "inga"),
            ("Giedrė", "giedre"),
            ("Aldona", "aldona"),
        ],
        "m_first": [
            ("Jonas", "jonas"),
            ("Tomas", "tomas"),
            ("Mindaugas", "mindaugas"),
            ("Giedrius", "giedrius"),
            ("Darius", "darius"),
            ("Paulius", "paulius"),
            ("Andrius", "andrius"),
            ("Vytautas", "vytautas"),
        ],
        # Married and maiden forms share the stem; the latin form is the same.
        "f_last": [
            ("Petrauskienė", "petrauskiene"),
            ("Jankauskaitė", "jankauskaite"),
            ("Vaitkutė", "vaitkute"),
            ("Žukauskienė", "zukauskiene"),
            ("Balčiūnaitė", "balciunaite"),
            ("Stankevičienė", "stankeviciene"),
            ("Paulauskienė", "paulauskiene"),
            ("Butkutė", "butkute"),
        ],
        "m_last": [
            ("Petrauskas", "petrauskas"),
            ("Jankauskas", "jankauskas"),
            ("Kazlauskas", "kazlauskas"),
            ("Žukauskas", "zukauskas"),
            ("Balčiūnas", "balciunas"),
            ("Stankevičius", "stankevicius"),
            ("Paulauskas", "paulauskas"),
            ("Butkus", "butkus"),
        ],
    },
    "en": {
        "f_first": [
            ("Sarah", "sarah"),
            ("Emily", "emily"),
            ("Priya", "priya"),
            ("Olivia", "olivia"),
            ("Hannah", "hannah"),
            ("Jessica", "jessica"),
            ("Megan", "megan"),
            ("Grace", "grace"),
        ],
        "m_first": [
            ("James", "james"),
            ("Tom", "tom"),
            ("Daniel", "daniel"),
            ("Mohammed", "mohammed"),
            ("Chris", "chris"),
            ("Ryan", "ryan"),
            ("David", "david"),
            ("Kevin", "kevin"),
        ],
        "f_last": [
            ("Mitchell", "mitchell"),
            ("O'Connor", "oconnor"),
            ("Patel", "patel"),
            ("Hughes", "hughes"),
            ("Clarke", "clarke"),
            ("Khan", "khan"),
            ("Brooks", "brooks"),
            ("Bennett", "bennett"),
            ("Walker", "walker"),
            ("Nguyen", "nguyen"),
        ],
    },
    "zh": {
        "f_first": [
            ("娜", "na"),
            ("敏", "min"),
            ("静", "jing"),
            ("丽", "li"),
            ("芳", "fang"),
            ("秀英", "xiuying"),
        ],
        "m_first": [
            ("伟", "wei"),
            ("洋", "yang"),
            ("强", "qiang"),
            ("磊", "lei"),
            ("军", "jun"),
            ("建国", "jianguo"),
        ],
        "f_last": [
            ("王", "wang"),
            ("李", "li"),
            ("张", "zhang"),
            ("刘", "liu"),
            ("陈", "chen"),
            ("杨", "yang"),
            ("赵", "zhao"),
            ("黄", "huang"),
        ],
    },
}

EMAIL_DOMAINS = ["example.com", "example.org", "example.net", "mail.example", "post.example"]

PLACES: dict[str, dict[str, list[str]]] = {
    "ru": {
        "town": ["Пермь", "Краснокамск", "Березники", "Соликамск", "Чайковский", "Кунгур"],
        "street": [
            "ул. Ленина",
            "ул. Мира",
            "ул. Пушкина",
            "ул. Газеты Звезда",
            "ул. Куйбышева",
            "Комсомольский пр.",
            "ул. Сибирская",
            "ул. Революции",
            "ул. Старцева",
            "ул. Юрша",
        ],
    },
    "pt": {
        "town": ["Porto", "Braga", "Setúbal", "Coimbra", "Aveiro", "Faro"],
        "street": [
            "Rua das Flores",
            "Avenida da Liberdade",
            "Rua Augusta",
            "Rua do Sol",
            "Travessa do Carmo",
            "Rua Direita",
            "Avenida Brasil",
            "Rua de São João",
        ],
    },
    "lt": {
        "town": ["Vilnius", "Kaunas", "Klaipėda", "Šiauliai", "Panevėžys", "Alytus", "Utena"],
        "street": [
            "Savanorių pr.",
            "Gedimino pr.",
            "Laisvės al.",
            "Taikos pr.",
            "Žirmūnų g.",
            "Liepų g.",
            "Beržų g.",
            "Vilniaus g.",
        ],
    },
    "en": {
        "town": ["Riverside", "Oakwood", "Millbrook", "Ashford", "Kingsbridge", "Westfield"],
        "street": [
            "Mill Lane",
            "Oak Street",
            "Station Road",
            "Church Street",
            "Maple Avenue",
            "Harbour View",
            "Elm Close",
        ],
    },
    "zh": {
        "town": ["朝阳区", "海淀区", "浦东新区", "天河区", "南山区"],
        "street": ["幸福路", "人民路", "建设路", "中山路", "解放路", "和平小区", "阳光花园"],
    },
}

MONTHS = {
    "ru": ["январь", "февраль", "март", "апрель", "октябрь", "ноябрь", "декабрь"],
    "pt": ["janeiro", "fevereiro", "março", "abril", "outubro", "novembro", "dezembro"],
    # Genitive, as in "kovo mėn. sąskaita".
    "lt": ["sausio", "vasario", "kovo", "balandžio", "spalio", "lapkričio", "gruodžio"],
    "en": ["January", "February", "March", "April", "October", "November", "December"],
    "zh": ["1月", "2月", "3月", "4月", "10月", "11月", "12月"],
}

CURRENCY = {"ru": "руб.", "pt": "€", "lt": "€", "en": "$", "zh": "元"}

# --------------------------------------------------------------------------- conversations
#
# Per story kind and language, lists of lines:
#   open   the customer's first message          follow  a nudge while nobody answered
#   ack    the agent's first answer              still   the customer, still waiting after it
#   ask    the agent asks for something (the ticket goes pending)
#   info   the customer gives what was asked     done    the agent's answer that settles it
#   thanks the customer's last word

TEXTS: dict[str, dict[str, dict[str, list[str]]]] = {
    "outage": {
        "ru": {
            "open": [
                "Добрый день, на {street} {house} нет света с {hour}:00. Когда дадут?",
                "нет света уже 3 часа, {town}, {street}. что случилось??",
                "Здравствуйте! У нас во всём подъезде пропал свет, {street} {house}, кв {flat}. "
                "Соседи тоже без света",
                "опять отключили свет на {street}. сколько можно?!",
                "Свет моргнул и пропал. {town}, {street} {house}. Это авария или плановые работы?",
                "здраствуйте нет электричества в доме {house} по {street}, холодильник течёт",
            ],
            "follow": [
                "???",
                "Алло, есть кто-нибудь?",
                "уже 2 часа жду ответа",
                "когда дадут свет??",
                "Ответьте пожалуйста",
            ],
            "ack": [
                "Здравствуйте, {name}! На {street} авария на линии 10 кВ, бригада уже выехала. "
                "Ориентировочное время восстановления — {eta}. Номер обращения #{ticket}.",
                "{name}, спасибо за сообщение. Отключение зафиксировано, бригада направлена. "
                "Следить за ходом работ можно на карте отключений: {map}",
            ],
            "still": [
                "до сих пор нет света",
                "Прошло уже 4 часа, света так и нет",
                "бригада так и не приехала",
                "когда уже??",
            ],
            "ask": [
                "{name}, подскажите, пожалуйста: у соседей свет есть? Проверьте, не выбило ли "
                "автомат в щитке. Если у соседей свет есть — это, скорее всего, внутренняя "
                "проводка.",
            ],
            "info": [
                "у соседей тоже нет, автоматы включены",
                "Проверили щиток, всё включено. У всего дома нет света",
            ],
            "done": [
                "Электроснабжение на {street} восстановлено. Если свет так и не появился — "
                "напишите нам, пожалуйста.",
                "Бригада закончила работы, свет должен быть. Спасибо за терпение!",
            ],
            "thanks": ["Свет дали, спасибо!", "да, всё работает. спасибо", "Спасибо большое 👍"],
        },
        "pt": {
            "open": [
                "Boa tarde, estamos sem luz na {street} {house} desde as {hour}h. Previsão?",
                "sem energia aqui em {town}, {street}. o que aconteceu??",
                "Olá, faltou luz no prédio todo ({street} {house}). Os vizinhos também estão "
                "sem luz",
                "de novo sem luz na {street}!! é a terceira vez esta semana",
                "Bom dia. Queda de energia na {street}, {town}. Têm previsão de quando volta?",
                "ola boa noite estamos sem luz a 2 horas na {street} o frigorifico ja esta a "
                "descongelar",
            ],
            "follow": [
                "???",
                "alguém?",
                "Olá?? ninguém responde",
                "já passaram 2 horas",
                "Alguma previsão??",
            ],
            "ack": [
                "Olá {name}! Há uma avaria na rede na {street}; a equipa já está a caminho. "
                "Previsão de reposição: {eta}. Pedido #{ticket}.",
                "{name}, obrigado pelo aviso. A falha está registada e uma equipa foi enviada. "
                "Pode acompanhar no mapa de interrupções: {map}",
            ],
            "still": [
                "ainda sem luz",
                "Já passaram 4 horas e nada",
                "a equipa ainda não chegou",
                "e então??",
            ],
            "ask": [
                "{name}, pode confirmar se os vizinhos também estão sem luz? Verifique também o "
                "disjuntor geral no quadro. Se os vizinhos tiverem luz, o problema deve ser na "
                "instalação interior.",
            ],
            "info": [
                "os vizinhos também estão sem luz, o quadro está ligado",
                "Verifiquei o quadro, está tudo ligado. O prédio todo está sem luz",
            ],
            "done": [
                "A energia na {street} foi reposta. Se continuar sem luz, avise-nos por favor.",
                "A equipa terminou a reparação, a luz já deve ter voltado. Obrigado pela "
                "paciência!",
            ],
            "thanks": [
                "A luz voltou, obrigada!",
                "sim, já está tudo bem. obrigado",
                "Muito obrigado 👍",
            ],
        },
        "lt": {
            "open": [
                "Laba diena, {street} {house} nėra elektros nuo {hour} val. Kada bus?",
                "nera elektros jau 2 val, {town}, {street}. kas atsitiko?",
                "Sveiki, dingo elektra visame name ({street} {house}). Kaimynai irgi be elektros",
                "Vėl nėra elektros {street}. Kiek galima?!",
                "Labas, mūsų gatvėje ({street}, {town}) dingo elektra. Ar tai avarija ar "
                "planiniai darbai?",
                "sveiki nuo ryto nera elektros {street} {house}, saldytuvas atitirpo",
            ],
            "follow": [
                "???",
                "Ar kas nors atsakys?",
                "laukiu jau 2 val.",
                "Kada bus elektra??",
                "Prašau atsakyti",
            ],
            "ack": [
                "Laba diena, {name}! {street} gedimas 10 kV linijoje, brigada jau išvažiavo. "
                "Numatomas elektros atstatymas — {eta}. Kreipinio Nr. #{ticket}.",
                "{name}, ačiū už pranešimą. Gedimas užregistruotas, brigada išsiųsta. Darbų eigą "
                "galite stebėti atjungimų žemėlapyje: {map}",
            ],
            "still": [
                "vis dar nėra elektros",
                "Praėjo 4 valandos, elektros vis dar nėra",
                "brigada taip ir neatvažiavo",
                "na ir kada??",
            ],
            "ask": [
                "{name}, ar kaimynai turi elektrą? Patikrinkite ir įvadinį automatinį jungiklį "
                "skydelyje. Jei kaimynai elektrą turi, greičiausiai gedimas vidaus instaliacijoje.",
            ],
            "info": [
                "kaimynai irgi be elektros, automatai įjungti",
                "Patikrinau skydelį, viskas įjungta. Visas namas be elektros",
            ],
            "done": [
                "Elektros tiekimas {street} atstatytas. Jei elektros vis dar nėra — parašykite "
                "mums.",
                "Brigada baigė darbus, elektra turėtų būti. Ačiū už kantrybę!",
            ],
            "thanks": ["Elektra yra, ačiū!", "taip, viskas veikia. ačiū", "Labai ačiū 👍"],
        },
        "en": {
            "open": [
                "Hi, no power at {house} {street} since about {hour}pm. Any idea when it'll be "
                "back?",
                "power out on {street}, {town}. whole street is dark",
                "Hello, we've had no electricity since this morning at {house} {street}. "
                "Neighbours too.",
                "Power outage AGAIN on {street}. Third time this month.",
                "lights went out about 20 min ago, {street} {town}. is there a known outage?",
                "no power here at {street} and my freezer is defrosting, please help",
            ],
            "follow": [
                "???",
                "hello??",
                "anyone there?",
                "still waiting for an answer",
                "any update??",
            ],
            "ack": [
                "Hi {name}, there's a fault on the line serving {street} and a crew is on the "
                "way. Estimated restoration: {eta}. Reference #{ticket}.",
                "Thanks for letting us know, {name}. The outage is logged and a crew has been "
                "dispatched. You can follow progress on our outage map: {map}",
            ],
            "still": [
                "still no power",
                "It's been 4 hours, still nothing",
                "crew hasn't shown up yet",
                "any news??",
            ],
            "ask": [
                "{name}, could you check whether your neighbours have power, and whether the main "
                "switch in your fuse box has tripped? If the neighbours have power, it's likely "
                "an issue inside the property.",
            ],
            "info": [
                "neighbours are out too, main switch is on",
                "Checked the fuse box, all on. The whole building is out",
            ],
            "done": [
                "Power has been restored on {street}. If you still have no supply, just reply "
                "here.",
                "The crew has finished the repair, you should have power now. Thanks for your "
                "patience!",
            ],
            "thanks": ["Power's back, thanks!", "yes all good now, thank you", "Thanks a lot 👍"],
        },
        "zh": {
            "open": [
                "你好，{street}{house}号停电了，从{hour}点开始，什么时候能恢复？",
                "{town}{street}这边全部停电了，怎么回事？？",
                "整栋楼都没电了，{street}{house}号，邻居家也一样",
                "又停电了！这个月第三次了，{street}",
                "请问{street}附近是不是有故障？家里突然断电了",
                "{street}没电两个小时了，冰箱里的东西都化了",
            ],
            "follow": ["？？？", "有人吗？", "等了两个小时了", "什么时候来电？？", "请回复一下"],
            "ack": [
                "{name}您好！{street}附近10千伏线路故障，抢修人员已出发，预计{eta}恢复供电。"
                "工单号 #{ticket}。",
                "{name}您好，感谢反馈。停电已登记，已派抢修队。可在停电地图查看进度：{map}",
            ],
            "still": [
                "还是没电",
                "已经四个小时了，还是没来电",
                "抢修人员还没到",
                "到底什么时候？？",
            ],
            "ask": [
                "{name}您好，请问邻居家有电吗？请检查一下电表箱里的总开关是否跳闸。如果邻居有电，"
                "可能是您家内部线路的问题。",
            ],
            "info": ["邻居家也没电，总开关是开着的", "检查过电表箱了，都正常，整栋楼都没电"],
            "done": [
                "{street}已恢复供电。如果仍然没电，请直接回复我们。",
                "抢修已完成，现在应该来电了。感谢您的耐心！",
            ],
            "thanks": ["来电了，谢谢！", "好的，已经正常了，谢谢", "非常感谢👍"],
        },
    },
    "safety": {
        "ru": {
            "open": [
                "На {street} {house} оборван провод, лежит на земле и искрит!! Дети рядом ходят",
                "Срочно! У столба на {street} искры и дым, провод висит очень низко",
                "упал провод на дорогу после ветра, {street}, {town}. искрит",
            ],
            "follow": ["Вы приедете???", "Провод до сих пор лежит!!"],
            "still": ["Хорошо, отошли. Ждём бригаду", "перекрыли проход лентой, бригады пока нет"],
            "done": [
                "Бригада на месте, линия обесточена, провод убран. Спасибо, что сообщили!",
                "Аварийная бригада устранила обрыв. Спасибо за бдительность, {name}!",
            ],
            "thanks": ["Спасибо, что быстро приехали", "видим, бригада работает. спасибо"],
        },
        "pt": {
            "open": [
                "Tem um fio caído na {street} {house}, a soltar faíscas!! Há crianças perto",
                "Urgente! No poste da {street} há faíscas e fumaça, o fio está muito baixo",
                "caiu um fio na estrada depois do vento, {street}, {town}. está a soltar faíscas",
            ],
            "follow": ["Vêm ou não???", "O fio continua no chão!!"],
            "still": [
                "Ok, afastámos todos. Aguardamos",
                "pusemos uma fita, a equipa ainda não chegou",
            ],
            "done": [
                "A equipa está no local, a linha foi desligada e o fio retirado. Obrigado pelo "
                "aviso!",
                "A equipa de emergência reparou a linha. Obrigado, {name}!",
            ],
            "thanks": ["Obrigada por virem tão rápido", "já vimos a equipa, obrigado"],
        },
        "lt": {
            "open": [
                "{street} {house} nutrūkęs laidas guli ant žemės ir spragsi!! Šalia vaikšto vaikai",
                "Skubiai! Prie stulpo {street} kibirkštys ir dūmai, laidas kabo labai žemai",
                "po vėjo nukritęs laidas ant kelio, {street}, {town}. spragsi",
            ],
            "follow": ["Ar atvažiuosite???", "Laidas vis dar guli!!"],
            "still": ["Gerai, pasitraukėme. Laukiame", "aptvėrėme juosta, brigados dar nėra"],
            "done": [
                "Brigada vietoje, linija atjungta, laidas pašalintas. Ačiū, kad pranešėte!",
                "Avarinė brigada pašalino gedimą. Ačiū už budrumą, {name}!",
            ],
            "thanks": ["Ačiū, kad greitai atvažiavote", "matome brigadą, ačiū"],
        },
        "en": {
            "open": [
                "There's a wire down on {street} outside number {house}, it's sparking!! Kids "
                "walk past here",
                "URGENT power line down across the road on {street}, {town}. sparks everywhere",
                "Smoke coming from the transformer box on {street}. Smells like burning",
            ],
            "follow": ["Is anyone coming???", "The wire is still on the ground!!"],
            "still": ["ok we've moved everyone back", "taped it off, no crew yet"],
            "done": [
                "The crew is on site, the line is isolated and the wire has been removed. Thanks "
                "for reporting it!",
                "Our emergency crew has made it safe. Thank you, {name}!",
            ],
            "thanks": ["Thanks for coming so quickly", "we can see the crew now, thanks"],
        },
        "zh": {
            "open": [
                "{street}{house}号门口电线掉在地上，还在冒火花！！旁边有小孩",
                "紧急！{street}电线杆上有火花还冒烟，电线垂得很低",
                "刮风后电线断了掉在路上，{street}，{town}，一直在打火花",
            ],
            "follow": ["你们来不来？？？", "电线还在地上！！"],
            "still": ["好的，我们已经离远了", "已经拉了警戒线，抢修队还没到"],
            "done": [
                "抢修人员已到现场，线路已断开，电线已清理。感谢您的报告！",
                "应急抢修队已处理完毕。谢谢您，{name}！",
            ],
            "thanks": ["谢谢你们来得这么快", "看到抢修车了，谢谢"],
        },
    },
    "bill": {
        "ru": {
            "open": [
                "Здравствуйте. Пришёл счёт на {amount} руб., обычно плачу около 1500. Почему так "
                "много?",
                "почему в квитанции за {month} начислено в 3 раза больше?? я столько не "
                "потратил{a}",
                "Лицевой счет {account}. С начислением за {month} не согласны, прошу сделать "
                "перерасчёт",
            ],
            "follow": ["???", "Жду ответа по счёту"],
            "ask": [
                "{name}, проверили: за {month} начисление по среднему, потому что показания не "
                "передавались. Пришлите, пожалуйста, текущие показания счётчика (или фото) — "
                "сделаем перерасчёт.",
            ],
            "ack": [
                "{name}, спасибо, проверяем начисление за {month}. Похоже, счёт выставлен по "
                "среднему. Какие сейчас показания счётчика?",
            ],
            "info": ["показания {reading}", "Вот: {reading} кВт·ч", "сейчас {reading}"],
            "still": [
                "И что теперь, платить или нет?",
                "а почему по среднему, я же передавал{a} показания",
            ],
            "done": [
                "Спасибо! Сделали перерасчёт, корректировка −{credit} руб. будет в следующей "
                "квитанции.",
            ],
            "thanks": ["Спасибо, разобрались", "ок, спасибо"],
        },
        "pt": {
            "open": [
                "Olá, a minha fatura deste mês veio {amount} €, normalmente pago uns 45. Porquê?",
                "a conta de luz de {month} veio o triplo!! isto é um absurdo",
                "CPE {account}. Não concordo com a fatura de {month}, peço revisão",
            ],
            "follow": ["???", "Continuo à espera de resposta sobre a fatura"],
            "ask": [
                "{name}, verificámos: a fatura de {month} foi feita com leitura estimada. "
                "Envie-nos "
                "por favor a leitura atual do contador (ou uma foto) e fazemos o acerto.",
            ],
            "ack": [
                "{name}, obrigado, estamos a verificar a fatura de {month}. Parece que foi feita "
                "com "
                "leitura estimada. Qual é a leitura atual do contador?",
            ],
            "info": ["leitura {reading}", "Aqui está: {reading} kWh", "o contador marca {reading}"],
            "still": ["E agora, pago ou não?", "mas porquê estimada se eu enviei a leitura?"],
            "done": [
                "Obrigado! Fizemos o acerto: o crédito de {credit} € aparece na próxima fatura.",
            ],
            "thanks": ["Obrigada, ficou resolvido", "ok obrigado"],
        },
        "lt": {
            "open": [
                "Laba diena, gavau sąskaitą {amount} €, paprastai moku apie 40. Kodėl tiek daug?",
                "kodėl {month} mėn. sąskaita 3 kartus didesnė?? tiek nesunaudojau",
                "Abon. Nr. {account}. Nesutinku su {month} mėn. sąskaita, prašau perskaičiuoti",
            ],
            "follow": ["???", "Laukiu atsakymo dėl sąskaitos"],
            "ask": [
                "{name}, patikrinome: {month} mėn. sąskaita apskaičiuota pagal vidutinį "
                "suvartojimą, nes rodmenys nebuvo deklaruoti. Atsiųskite dabartinius skaitiklio "
                "rodmenis (arba nuotrauką) — perskaičiuosime.",
            ],
            "ack": [
                "{name}, ačiū, tikriname {month} mėn. sąskaitą. Panašu, kad ji apskaičiuota pagal "
                "vidurkį. Kokie dabar skaitiklio rodmenys?",
            ],
            "info": ["rodmenys {reading}", "Štai: {reading} kWh", "dabar rodo {reading}"],
            "still": ["Tai mokėti ar ne?", "kodėl pagal vidurkį, aš gi deklaravau"],
            "done": ["Ačiū! Perskaičiavome, {credit} € korekcija bus kitoje sąskaitoje."],
            "thanks": ["Ačiū, susitvarkė", "gerai, ačiū"],
        },
        "en": {
            "open": [
                "Hi, my bill this month is ${amount}, normally it's about $60. Why so high?",
                "why is my {month} bill three times the usual?? this is ridiculous",
                "Account {account}. I'm disputing the {month} invoice, please review it",
            ],
            "follow": ["???", "Still waiting to hear back about my bill"],
            "ask": [
                "{name}, I've checked: the {month} bill was based on an estimated reading. Could "
                "you send the current meter reading (or a photo)? We'll correct the bill.",
            ],
            "ack": [
                "{name}, thanks, I'm looking into the {month} bill. It looks like it was "
                "estimated. What does your meter read today?",
            ],
            "info": ["reading is {reading}", "Here you go: {reading} kWh", "meter says {reading}"],
            "still": ["So do I pay it or not?", "why estimated? I sent a reading last month"],
            "done": ["Thanks! I've rebilled it: a ${credit} credit will show on your next bill."],
            "thanks": ["Thanks, sorted", "ok thank you"],
        },
        "zh": {
            "open": [
                "你好，这个月电费账单{amount}元，平时才两百多，怎么这么多？",
                "{month}的电费是平时的三倍？？太离谱了",
                "户号{account}，对{month}的账单有异议，请帮忙核查",
            ],
            "follow": ["？？？", "账单的事还没人回复"],
            "ask": [
                "{name}您好，经核查，{month}账单是按估算读数计费的。请发送当前电表读数（或照片），"
                "我们会为您重新核算。",
            ],
            "ack": [
                "{name}您好，正在核查{month}的账单，看起来是按估算读数计费的。"
                "请问现在电表读数是多少？"
            ],
            "info": ["读数是{reading}", "现在是{reading}度", "电表显示{reading}"],
            "still": ["那我现在要不要交？", "我上个月报过读数了，为什么还是估算？"],
            "done": ["谢谢！已重新核算，{credit}元差额将在下期账单中抵扣。"],
            "thanks": ["谢谢，解决了", "好的，谢谢"],
        },
    },
    "paid": {
        "ru": {
            "open": [
                "Я оплатил{a} {date}, а мне пришла смс что есть долг. Как так?",
                "Оплатил{a} через онлайн-банк {date}, лс {account}, почему висит задолженность?",
                "здравствуйте, деньги списались, а в личном кабинете долг {amount} руб",
            ],
            "follow": ["???", "Так что с оплатой?"],
            "ack": [
                "{name}, проверяем платёж. Подскажите, пожалуйста, номер лицевого счёта и сумму.",
            ],
            "info": ["лс {account}, {amount} руб", "{account}, платил{a} {amount}"],
            "done": [
                "{name}, платёж от {date} на {amount} руб. поступил, задолженности нет. Банковский "
                "перевод идёт 1–3 рабочих дня, поэтому напоминание ушло раньше — не обращайте на "
                "него внимания. Извините за беспокойство!",
            ],
            "still": ["А пени мне не начислят?"],
            "thanks": ["Спасибо!", "хорошо, спасибо"],
        },
        "pt": {
            "open": [
                "Já paguei a fatura no dia {date} e recebi um SMS de dívida. Como assim?",
                "paguei por multibanco dia {date}, CPE {account}, porque aparece em dívida?",
                "olá, o dinheiro saiu da conta mas na área de cliente diz que devo {amount} €",
            ],
            "follow": ["???", "Então, e o pagamento?"],
            "ack": ["{name}, estamos a verificar. Pode indicar o CPE e o valor pago?"],
            "info": ["CPE {account}, {amount} €", "{account}, paguei {amount}"],
            "done": [
                "{name}, o pagamento de {amount} € do dia {date} foi recebido, não tem nada em "
                "dívida. As transferências demoram 1 a 3 dias úteis, por isso o lembrete saiu "
                "antes — pode ignorá-lo. Pedimos desculpa!",
            ],
            "still": ["E não vou pagar juros?"],
            "thanks": ["Obrigada!", "ok, obrigado"],
        },
        "lt": {
            "open": [
                "Sumokėjau {date}, o gavau SMS apie skolą. Kaip čia?",
                "apmokėjau per el. bankininkystę {date}, abon. nr. {account}, kodėl rodo skolą?",
                "sveiki, pinigai nuskaičiuoti, o savitarnoje rodo skolą {amount} €",
            ],
            "follow": ["???", "Tai kas su mokėjimu?"],
            "ack": ["{name}, tikriname mokėjimą. Nurodykite abonentinį numerį ir sumą."],
            "info": ["abon. nr. {account}, {amount} €", "{account}, mokėjau {amount}"],
            "done": [
                "{name}, {date} mokėjimas ({amount} €) gautas, skolos nėra. Bankinis pavedimas "
                "užtrunka 1–3 darbo dienas, todėl priminimas išsiųstas anksčiau — galite jo "
                "nepaisyti. Atsiprašome!",
            ],
            "still": ["O delspinigių neskaičiuosite?"],
            "thanks": ["Ačiū!", "gerai, ačiū"],
        },
        "en": {
            "open": [
                "I paid my bill on {date} and just got a payment reminder text. What's going on?",
                "paid online on {date}, account {account}, why does it still show as overdue?",
                "money has left my bank but my online account says I owe ${amount}",
            ],
            "follow": ["???", "Any news on my payment?"],
            "ack": ["{name}, I'm checking now. Could you give me the account number and amount?"],
            "info": ["account {account}, ${amount}", "{account}, paid {amount}"],
            "done": [
                "{name}, your payment of ${amount} from {date} has arrived and your balance is "
                "zero. Bank transfers take 1–3 working days, so the reminder went out before it "
                "landed — please ignore it. Sorry for the worry!",
            ],
            "still": ["Will I get a late fee?"],
            "thanks": ["Thanks!", "great, thank you"],
        },
        "zh": {
            "open": [
                "我{date}已经交了电费，怎么还收到欠费短信？",
                "{date}用支付宝缴的费，户号{account}，为什么还显示欠费？",
                "钱已经扣了，但是网上营业厅还显示欠费{amount}元",
            ],
            "follow": ["？？？", "缴费的事怎么样了？"],
            "ack": ["{name}您好，正在核查，请提供户号和缴费金额。"],
            "info": ["户号{account}，{amount}元", "{account}，交了{amount}"],
            "done": [
                "{name}您好，您{date}缴纳的{amount}元已到账，目前没有欠费。"
                "银行转账需要1–3个工作日，"
                "所以提醒短信发早了，请忽略。抱歉给您带来困扰！",
            ],
            "still": ["会不会收滞纳金？"],
            "thanks": ["谢谢！", "好的，谢谢"],
        },
    },
    "meter": {
        "ru": {
            "open": [
                "Показания {reading}, лс {account}",
                "передаю показания: день {reading} ночь {reading2}",
                "Добрый вечер, показания счетчика на {date}: {reading}",
                "показания {reading} за {month}",
            ],
            "ask": [
                "{name}, показания {reading} меньше предыдущих ({prev}). Проверьте, пожалуйста, и "
                "пришлите фото счётчика.",
            ],
            "info": ["Ой, перепутал{a} цифры. Правильно {reading3}", "вот фото, там {reading3}"],
            "done": [
                "Спасибо, {name}! Показания {reading} приняты, счёт будет выставлен по ним.",
                "Показания приняты, спасибо! В следующий раз можно передать их в боте одной "
                "кнопкой.",
            ],
            "thanks": ["Спасибо", "👍"],
        },
        "pt": {
            "open": [
                "Leitura do contador: {reading}. CPE {account}",
                "boa noite, envio a leitura {reading}",
                "leitura vazio {reading2} / fora de vazio {reading}",
                "Bom dia, a leitura de hoje ({date}) é {reading}",
            ],
            "ask": [
                "{name}, a leitura {reading} é inferior à anterior ({prev}). Pode confirmar e "
                "enviar uma foto do contador?",
            ],
            "info": [
                "Desculpe, troquei os números. É {reading3}",
                "segue a foto, marca {reading3}",
            ],
            "done": [
                "Obrigado, {name}! A leitura {reading} foi registada e a próxima fatura será feita "
                "com ela.",
                "Leitura registada, obrigado! Da próxima vez pode enviá-la pelo menu do WhatsApp.",
            ],
            "thanks": ["Obrigada", "👍"],
        },
        "lt": {
            "open": [
                "Skaitiklio rodmenys {reading}, abon. nr. {account}",
                "rodmenys: dieninis {reading}, naktinis {reading2}",
                "Sveiki, deklaruoju rodmenis {reading}",
                "mano rodmenys {date}: {reading}",
            ],
            "ask": [
                "{name}, rodmenys {reading} mažesni nei ankstesni ({prev}). Patikrinkite ir "
                "atsiųskite skaitiklio nuotrauką.",
            ],
            "info": [
                "Atsiprašau, sumaišiau skaičius. Teisingai {reading3}",
                "štai nuotrauka, {reading3}",
            ],
            "done": [
                "Ačiū, {name}! Rodmenys {reading} priimti, sąskaita bus paskaičiuota pagal juos.",
                "Rodmenys priimti, ačiū! Kitą kartą galite juos deklaruoti savitarnoje.",
            ],
            "thanks": ["Ačiū", "👍"],
        },
        "en": {
            "open": [
                "Meter reading {reading}, account {account}",
                "my reading today is {reading}",
                "Meter reading: day {reading}, night {reading2}",
                "Hi, here's my meter reading: {reading}",
            ],
            "ask": [
                "{name}, {reading} is lower than your previous reading ({prev}). Could you "
                "double-check and send a photo of the meter?",
            ],
            "info": [
                "Sorry, I mixed up the digits. It's {reading3}",
                "photo attached, it says {reading3}",
            ],
            "done": [
                "Thanks {name}! Reading {reading} is recorded and your next bill will use it.",
                "Reading received, thank you! Next time you can also send it from the menu in "
                "this chat.",
            ],
            "thanks": ["Thanks", "👍"],
        },
        "zh": {
            "open": [
                "电表读数{reading}，户号{account}",
                "报一下读数：峰{reading} 谷{reading2}",
                "你好，今天抄表读数是{reading}",
                "{date}电表读数{reading}",
            ],
            "ask": ["{name}您好，读数{reading}比上次（{prev}）还低，请核对后发一张电表照片。"],
            "info": ["不好意思，数字写反了，应该是{reading3}", "照片发了，读数是{reading3}"],
            "done": [
                "谢谢{name}！读数{reading}已录入，下期账单将按此计费。",
                "读数已收到，谢谢！下次也可以通过菜单直接上报。",
            ],
            "thanks": ["谢谢", "👍"],
        },
    },
    "meter_how": {
        "ru": {
            "open": [
                "Как передать показания счётчика? На сайте не могу найти",
                "куда теперь отправлять показания?",
            ],
            "thanks": ["Спасибо, передал{a}", "понятно, спасибо"],
        },
        "pt": {
            "open": [
                "Como envio a leitura do contador? Não encontro no site",
                "onde é que mando a leitura agora?",
            ],
            "thanks": ["Obrigada, já enviei", "percebi, obrigado"],
        },
        "lt": {
            "open": [
                "Kaip deklaruoti skaitiklio rodmenis? Svetainėje neradau",
                "kur dabar siųsti rodmenis?",
            ],
            "thanks": ["Ačiū, deklaravau", "supratau, ačiū"],
        },
        "en": {
            "open": [
                "How do I submit a meter reading? Can't find it on the website",
                "where do I send my meter reading now?",
            ],
            "thanks": ["Thanks, done", "got it, thanks"],
        },
        "zh": {
            "open": ["怎么上报电表读数？网站上找不到", "现在读数要发到哪里？"],
            "thanks": ["谢谢，已经报了", "明白了，谢谢"],
        },
    },
    "tariff": {
        "ru": {
            "open": [
                "Подскажите, выгодно ли перейти на двухтарифный учёт? Сколько стоит ночной тариф?",
                "какой сейчас тариф день/ночь?",
                "Здравствуйте, хочу перейти на тариф день-ночь, что для этого нужно?",
            ],
            "follow": ["???"],
            "info": ["А как подать заявку?", "Понятно. А счётчик менять нужно?"],
            "ask": [
                "Отправили ссылку на заявление: {portal}/tariff . Заполните и пришлите номер "
                "лицевого счёта — оформим с 1-го числа.",
            ],
            "done": [
                "Готово: с 1-го числа у вас тариф день/ночь. Показания передавайте по двум зонам."
            ],
            "thanks": ["Спасибо за подробный ответ", "Спасибо!"],
        },
        "pt": {
            "open": [
                "Boa tarde, compensa mudar para a tarifa bi-horária? Quanto custa o kWh à noite?",
                "qual é o preço do kWh no vazio?",
                "Olá, quero mudar para bi-horário, o que preciso fazer?",
            ],
            "follow": ["???"],
            "info": ["E como faço o pedido?", "Percebi. E tenho de trocar o contador?"],
            "ask": [
                "Enviámos o link do pedido: {portal}/tarifa . Preencha e indique o CPE — a mudança "
                "fica ativa no dia 1.",
            ],
            "done": [
                "Feito: a partir do dia 1 fica com tarifa bi-horária. Envie as leituras dos dois "
                "períodos."
            ],
            "thanks": ["Obrigado pela explicação", "Obrigada!"],
        },
        "lt": {
            "open": [
                "Sveiki, ar apsimoka pereiti prie dviejų laiko zonų tarifo? Kiek kainuoja naktinis "
                "tarifas?",
                "kokia dabar nakties tarifo kaina už kWh?",
                "Laba diena, noriu pakeisti tarifą į dieninį/naktinį, ką reikia daryti?",
            ],
            "follow": ["???"],
            "info": ["O kaip pateikti prašymą?", "Supratau. O skaitiklį reikia keisti?"],
            "ask": [
                "Išsiuntėme prašymo nuorodą: {portal}/tarifas . Užpildykite ir nurodykite "
                "abonentinį numerį — tarifą pakeisime nuo 1 dienos.",
            ],
            "done": [
                "Atlikta: nuo 1 d. taikomas dviejų laiko zonų tarifas. Deklaruokite abu rodmenis."
            ],
            "thanks": ["Ačiū už išsamų atsakymą", "Ačiū!"],
        },
        "en": {
            "open": [
                "Hi, is it worth switching to the night rate? How much is a kWh at night?",
                "what's the current night rate price per kwh?",
                "Hello, I'd like to switch my account to a time-of-use tariff. What's the process?",
            ],
            "follow": ["???"],
            "info": ["Ok, and how can I apply?", "Makes sense. Do I need a new meter?"],
            "ask": [
                "I've sent you the application link: {portal}/tariff . Fill it in with your "
                "account number and we'll switch you from the 1st.",
            ],
            "done": [
                "Done: you're on the time-of-use tariff from the 1st. Please send both day and "
                "night readings."
            ],
            "thanks": ["Thanks for the detailed answer", "Thanks!"],
        },
        "zh": {
            "open": [
                "请问峰谷电价怎么算？晚上一度电多少钱？",
                "现在谷时电价是多少？",
                "你好，我想申请峰谷分时电价，需要什么手续？",
            ],
            "follow": ["？？？"],
            "info": ["那怎么申请？", "明白了，需要换电表吗？"],
            "ask": ["申请链接已发给您：{portal}/tariff ，填写户号后提交，下月1日起生效。"],
            "done": ["已办理：下月1日起执行峰谷电价，请分别上报峰、谷读数。"],
            "thanks": ["谢谢详细的解答", "谢谢！"],
        },
    },
    "contract": {
        "ru": {
            "open": [
                "Переезжаю {date}, как переоформить договор на новую квартиру?",
                "Купили квартиру на {street}, нужно переоформить лицевой счёт на меня",
                "Хочу расторгнуть договор, съезжаем из квартиры в конце месяца",
            ],
            "follow": ["???"],
            "ask": [
                "{name}, для переоформления пришлите, пожалуйста: копию паспорта, документ о "
                "собственности и показания счётчика на дату переезда. Можно фото прямо сюда.",
            ],
            "info": ["Отправил{a} документы на почту", "Вот документы, показания {reading}"],
            "done": [
                "Договор переоформлен с {date}. Новый лицевой счёт {account2}. Удачи на новом "
                "месте!"
            ],
            "thanks": ["Спасибо большое!", "Отлично, спасибо"],
        },
        "pt": {
            "open": [
                "Vou mudar de casa dia {date}, como passo o contrato para a nova morada?",
                "Comprámos casa na {street}, preciso de mudar a titularidade do contrato",
                "Quero terminar o contrato, vamos sair do apartamento no fim do mês",
            ],
            "follow": ["???"],
            "ask": [
                "{name}, para a mudança de titularidade envie por favor: cartão de cidadão, "
                "documento de propriedade ou contrato de arrendamento e a leitura no dia da "
                "mudança. Pode mandar fotos aqui mesmo.",
            ],
            "info": [
                "Enviei os documentos por email",
                "Aqui estão os documentos, leitura {reading}",
            ],
            "done": ["Contrato alterado a partir de {date}. Novo CPE {account2}. Boa mudança!"],
            "thanks": ["Muito obrigada!", "Perfeito, obrigado"],
        },
        "lt": {
            "open": [
                "Kraustausi {date}, kaip perrašyti sutartį į naują butą?",
                "Nusipirkome butą {street}, reikia perrašyti sutartį mano vardu",
                "Noriu nutraukti sutartį, mėnesio pabaigoje išsikraustome",
            ],
            "follow": ["???"],
            "ask": [
                "{name}, sutarčiai perrašyti atsiųskite: asmens dokumento kopiją, nuosavybės "
                "dokumentą ir skaitiklio rodmenis persikraustymo dieną. Galite nufotografuoti ir "
                "atsiųsti čia.",
            ],
            "info": ["Išsiunčiau dokumentus el. paštu", "Štai dokumentai, rodmenys {reading}"],
            "done": [
                "Sutartis perrašyta nuo {date}. Naujas abon. Nr. {account2}. Sėkmės naujoje "
                "vietoje!"
            ],
            "thanks": ["Labai ačiū!", "Puiku, ačiū"],
        },
        "en": {
            "open": [
                "I'm moving house on {date}, how do I move my contract to the new address?",
                "We've bought a flat on {street} and need to take over the electricity contract",
                "I want to terminate my contract, moving out at the end of the month",
            ],
            "follow": ["???"],
            "ask": [
                "{name}, to change the contract please send: a photo ID, proof of ownership or "
                "your tenancy agreement, and the meter reading on the day you move. Photos here "
                "are fine.",
            ],
            "info": ["Sent the documents by email", "Here are the documents, reading is {reading}"],
            "done": [
                "All set: the contract is in your name from {date}. New account {account2}. Good "
                "luck with the move!"
            ],
            "thanks": ["Thanks so much!", "Perfect, thank you"],
        },
        "zh": {
            "open": [
                "我{date}搬家，怎么把合同转到新地址？",
                "我们在{street}买了房子，需要办理电表过户",
                "月底搬走，想注销用电合同",
            ],
            "follow": ["？？？"],
            "ask": [
                "{name}您好，办理过户请提供：身份证、房产证或租赁合同，以及搬家当天的电表读数，"
                "可以直接拍照发这里。"
            ],
            "info": ["资料已经发到邮箱了", "资料在这里，读数{reading}"],
            "done": ["已办理完成：自{date}起合同转到您名下，新户号{account2}。祝搬家顺利！"],
            "thanks": ["太感谢了！", "好的，谢谢"],
        },
    },
    "maintenance": {
        "ru": {
            "open": [
                "Пришло уведомление о плановых работах {date} на {street}. Во сколько отключат и "
                "надолго?",
                "у нас в подъезде объявление про профилактику, свет будет?",
                "Почему плановые работы в будний день? Я работаю из дома",
            ],
            "follow": ["???"],
            "done": [
                "{name}, работы на {street} {date} с 09:00 до 15:00: замена опор линии 0,4 кВ. "
                "Перенести, к сожалению, нельзя. Актуальный график — на карте: {map}",
            ],
            "thanks": ["Понятно, спасибо", "Спасибо за информацию"],
        },
        "pt": {
            "open": [
                "Recebi aviso de trabalhos programados dia {date} na {street}. A que horas e por "
                "quanto tempo?",
                "há um aviso no prédio sobre manutenção, vamos ficar sem luz quanto tempo?",
                "Porque fazem obras num dia útil? Trabalho em casa",
            ],
            "follow": ["???"],
            "done": [
                "{name}, os trabalhos na {street} no dia {date} são das 9h às 15h: substituição de "
                "postes da rede de baixa tensão. Infelizmente não é possível adiar. Horário "
                "atualizado no mapa: {map}",
            ],
            "thanks": ["Ok, obrigado", "Obrigada pela informação"],
        },
        "lt": {
            "open": [
                "Gavau pranešimą apie planinius darbus {date} {street}. Kada atjungs ir kiek "
                "ilgai?",
                "laiptinėje skelbimas apie remontą, kiek laiko nebus šviesos?",
                "Kodėl planiniai darbai darbo dieną? Dirbu iš namų",
            ],
            "follow": ["???"],
            "done": [
                "{name}, darbai {street} {date} vyks 9–15 val.: keičiamos 0,4 kV linijos atramos. "
                "Deja, nukelti negalime. Aktualus grafikas žemėlapyje: {map}",
            ],
            "thanks": ["Aišku, ačiū", "Ačiū už informaciją"],
        },
        "en": {
            "open": [
                "Got a notice about planned work on {street} on {date}. What time and for how "
                "long?",
                "there's a maintenance notice in our building, how long will the power be off?",
                "Why is the scheduled outage on a weekday? I work from home",
            ],
            "follow": ["???"],
            "done": [
                "{name}, the work on {street} on {date} runs 9am–3pm: we're replacing poles on the "
                "low-voltage line. I'm afraid it can't be moved. Live schedule on the map: {map}",
            ],
            "thanks": ["Ok, thanks", "Thanks for the info"],
        },
        "zh": {
            "open": [
                "收到通知说{date}{street}计划停电检修，几点到几点？",
                "楼道里贴了检修通知，要停多久？",
                "为什么检修安排在工作日？我在家办公",
            ],
            "follow": ["？？？"],
            "done": [
                "{name}您好，{street}的检修时间为{date} 9:00–15:00，更换低压线路电杆，无法改期，"
                "敬请谅解。最新安排见地图：{map}"
            ],
            "thanks": ["明白了，谢谢", "谢谢告知"],
        },
    },
    "debt": {
        "ru": {
            "open": [
                "Пришло уведомление об отключении за долг, сейчас не могу оплатить всю сумму "
                "{amount} руб. Можно частями?",
                "мне отключат свет? у меня маленький ребенок, денег до зарплаты нет",
                "Здравствуйте, получил{a} уведомление об отключении. Можно рассрочку?",
            ],
            "follow": ["???", "Ответьте, пожалуйста, это срочно"],
            "info": ["Да, так подходит. Спасибо!", "Хорошо, первый платёж внесу в пятницу"],
            "done": [
                "Соглашение о рассрочке оформлено, уведомление об отключении отозвано. Спасибо, "
                "{name}!"
            ],
            "thanks": ["Спасибо огромное", "Спасибо, выручили"],
        },
        "pt": {
            "open": [
                "Recebi um aviso de corte, não consigo pagar os {amount} € de uma vez. Posso pagar "
                "em prestações?",
                "vão cortar a luz? tenho um bebé, só recebo no dia 5",
                "Boa tarde, recebi aviso de corte. É possível um plano de pagamento?",
            ],
            "follow": ["???", "Por favor respondam, é urgente"],
            "info": ["Sim, aceito. Obrigada!", "Ok, pago a primeira prestação na sexta"],
            "done": ["Plano de pagamento registado e aviso de corte anulado. Obrigado, {name}!"],
            "thanks": ["Muito obrigada", "Obrigado, ajudaram muito"],
        },
        "lt": {
            "open": [
                "Gavau įspėjimą dėl atjungimo, negaliu sumokėti visos {amount} € sumos. Ar galima "
                "dalimis?",
                "ar atjungs elektrą? turiu mažą vaiką, pinigų iki algos neturiu",
                "Sveiki, gavau įspėjimą dėl atjungimo. Ar galima išdėstyti skolą?",
            ],
            "follow": ["???", "Prašau atsakyti, skubu"],
            "info": ["Taip, sutinku. Ačiū!", "Gerai, pirmą įmoką sumokėsiu penktadienį"],
            "done": [
                "Mokėjimo grafikas sudarytas, įspėjimas dėl atjungimo atšauktas. Ačiū, {name}!"
            ],
            "thanks": ["Labai ačiū", "Ačiū, labai padėjote"],
        },
        "en": {
            "open": [
                "I got a disconnection notice, I can't pay the full ${amount} right now. Can I pay "
                "in instalments?",
                "are you going to cut me off? I have a newborn and payday isn't until Friday",
                "Hello, received a disconnection notice. Is a payment plan possible?",
            ],
            "follow": ["???", "Please answer, this is urgent"],
            "info": ["Yes, that works. Thank you!", "Ok, I'll pay the first instalment on Friday"],
            "done": [
                "Your payment plan is set up and the disconnection notice is cancelled. Thanks, "
                "{name}!"
            ],
            "thanks": ["Thank you so much", "Thanks, that's a relief"],
        },
        "zh": {
            "open": [
                "收到欠费停电通知，{amount}元一次交不起，能分期吗？",
                "会给我断电吗？家里有小孩，发工资还要一周",
                "你好，收到断电通知，可以办理分期缴费吗？",
            ],
            "follow": ["？？？", "请尽快回复，很急"],
            "info": ["好的，同意。谢谢！", "好，周五先交第一期"],
            "done": ["分期协议已办理，停电通知已撤销。谢谢您，{name}！"],
            "thanks": ["太感谢了", "谢谢，帮大忙了"],
        },
    },
    "x": {
        "en": {
            "open": [
                "@DemoEnergy third outage this week in {town}. Absolutely useless. #poweroutage",
                "@DemoEnergy is there an outage in {town}? whole street dark",
                "Hey @DemoEnergy, been without power for 6 hours on {street}, any update?? "
                "#demoenergy",
            ],
            "ack": [
                "@{handle} Sorry about this. There's a fault affecting parts of {town}; crews are "
                "on it, current estimate {eta}. Could you DM us your address so we can check your "
                "street?",
            ],
            "ask": [
                "@{handle} We'd like to look into this. Please DM us your address and account "
                "number."
            ],
            "still": ["@DemoEnergy still nothing. 7 hours now.", "@DemoEnergy DM sent"],
            "done": ["@{handle} Power should be back on {street} now. Thanks for bearing with us."],
            "thanks": ["@DemoEnergy it's back, thanks", "@DemoEnergy ok, power's on. cheers"],
        },
        "pt": {
            "open": [
                "@DemoEnergy de novo sem luz em {town}!! que vergonha",
                "@DemoEnergy alguma previsão para a {street}? estamos sem energia há 5 horas",
            ],
            "ack": [
                "@{handle} Lamentamos. Há uma avaria em parte de {town}; as equipas estão no "
                "local, "
                "previsão {eta}. Pode enviar-nos a morada por mensagem privada?",
            ],
            "ask": ["@{handle} Queremos verificar. Envie-nos por DM a morada e o CPE, por favor."],
            "still": ["@DemoEnergy e nada até agora", "@DemoEnergy enviei DM"],
            "done": ["@{handle} A energia na {street} já foi reposta. Obrigado pela paciência."],
            "thanks": ["@DemoEnergy já voltou, obrigada", "@DemoEnergy ok, obrigado"],
        },
        "ru": {
            "open": ["@DemoEnergy опять нет света в {town}, безобразие"],
            "ack": [
                "@{handle} Приносим извинения. Авария в части {town}, бригады работают, "
                "ориентировочно {eta}. Напишите нам адрес в личные сообщения?",
            ],
            "ask": ["@{handle} Пришлите, пожалуйста, в личку адрес и номер лицевого счёта."],
            "still": ["@DemoEnergy написал в личку"],
            "done": ["@{handle} Электроснабжение на {street} восстановлено. Спасибо за терпение."],
            "thanks": ["@DemoEnergy дали, спасибо"],
        },
        "lt": {
            "open": ["@DemoEnergy vėl nėra elektros {town}! Gėda"],
            "ack": [
                "@{handle} Atsiprašome. Gedimas dalyje {town}, brigados dirba, numatoma {eta}. "
                "Parašykite adresą asmenine žinute?",
            ],
            "ask": ["@{handle} Parašykite asmenine žinute adresą ir abonentinį numerį."],
            "still": ["@DemoEnergy parašiau asmeninę žinutę"],
            "done": ["@{handle} Elektros tiekimas {street} atstatytas. Ačiū už kantrybę."],
            "thanks": ["@DemoEnergy yra, ačiū"],
        },
        "zh": {
            "open": ["@DemoEnergy {town}又停电了，已经三个小时了，太差了"],
            "ack": [
                "@{handle} 非常抱歉，{town}部分区域线路故障，抢修中，预计{eta}恢复。"
                "请私信告诉我们地址。"
            ],
            "ask": ["@{handle} 请私信提供地址和户号，我们帮您核查。"],
            "still": ["@DemoEnergy 已私信"],
            "done": ["@{handle} {street}已恢复供电，感谢耐心等待。"],
            "thanks": ["@DemoEnergy 来电了，谢谢"],
        },
    },
    "other": {
        "ru": {
            "open": [
                "Подскажите часы работы офиса на ул. Ленина?",
                "Как зарегистрироваться в личном кабинете?",
                "Спасибо вашему мастеру, быстро всё сделал!",
            ],
            "done": [
                "{name}, офис на ул. Ленина работает пн–пт 8:00–19:00, сб 9:00–14:00.",
                "Зарегистрироваться можно на {portal}: понадобится номер лицевого счёта из "
                "квитанции.",
                "Спасибо за тёплые слова, {name}! Обязательно передадим.",
            ],
            "thanks": ["Спасибо", "ок"],
        },
        "pt": {
            "open": [
                "Qual é o horário da loja de {town}?",
                "Como me registo na área de cliente?",
                "Obrigada ao técnico de ontem, foi muito simpático!",
            ],
            "done": [
                "{name}, a loja de {town} abre de segunda a sexta das 9h às 18h.",
                "Pode registar-se em {portal}: vai precisar do CPE que vem na fatura.",
                "Obrigado pelas palavras, {name}! Vamos transmitir ao técnico.",
            ],
            "thanks": ["Obrigada", "ok"],
        },
        "lt": {
            "open": [
                "Kokios klientų aptarnavimo skyriaus darbo valandos?",
                "Sveiki, kaip prisiregistruoti savitarnoje?",
                "Ačiū jūsų meistrui, viską greitai sutvarkė!",
            ],
            "done": [
                "{name}, klientų aptarnavimo skyrius dirba I–V 8–17 val.",
                "Prisiregistruoti galite {portal}: reikės abonentinio numerio iš sąskaitos.",
                "Ačiū už gerus žodžius, {name}! Būtinai perduosime.",
            ],
            "thanks": ["Ačiū", "ok"],
        },
        "en": {
            "open": [
                "What are your office opening hours in {town}?",
                "How do I register for the online account?",
                "Just wanted to say thanks to the engineer who came out yesterday, great job",
            ],
            "done": [
                "{name}, our {town} office is open Monday to Friday, 9am to 5pm.",
                "You can register at {portal}: you'll need the account number from your bill.",
                "Thanks for the kind words, {name}! We'll pass them on.",
            ],
            "thanks": ["Thanks", "ok"],
        },
        "zh": {
            "open": [
                "请问{town}营业厅几点下班？",
                "网上营业厅怎么注册？",
                "感谢昨天来的师傅，服务很好！",
            ],
            "done": [
                "{name}您好，{town}营业厅周一至周五9:00–17:00营业。",
                "可在{portal}注册，需要账单上的户号。",
                "谢谢您的认可，{name}！我们会转达给师傅。",
            ],
            "thanks": ["谢谢", "好的"],
        },
    },
}

# Kinds whose "ack" is a question: the customer always answers it before the agent settles.
ACK_ASKS = {"bill", "paid"}
# Kinds whose "info" is a natural next question after a plain answer (not only after "ask").
INFO_AFTER_ACK = {"tariff"}

# Which canned response an agent uses for a step of a story kind.
CANNED_FOR = {
    ("outage", "ack"): "outage-ack",
    ("safety", "ack"): "safety-wire",
    ("paid", "done"): "payment-received",
    ("debt", "ask"): "payment-plan",
    ("tariff", "ack"): "tariff-night",
    ("meter_how", "ack"): "meter-how",
}

# --------------------------------------------------------------------------- canned responses

# shortcut, team slug (None: every team), {language: (title, body)}
CANNED: list[tuple[str, str | None, dict[str, tuple[str, str]]]] = [
    (
        "outage-ack",
        "outages",
        {
            "ru": (
                "Авария: бригада выехала",
                "Здравствуйте, {{contact.name}}! Отключение зафиксировано, аварийная бригада уже "
                "выехала. Номер обращения #{{ticket.id}}. Сообщим, как только свет дадут. "
                "— {{agent.name}}",
            ),
            "pt": (
                "Avaria: equipa a caminho",
                "Olá {{contact.name}}! A falha está registada e a equipa já vai a caminho. Pedido "
                "#{{ticket.id}}. Avisamos assim que a energia for reposta. — {{agent.name}}",
            ),
            "lt": (
                "Gedimas: brigada išvyko",
                "Laba diena, {{contact.name}}! Gedimas užregistruotas, avarinė brigada jau "
                "išvyko. Kreipinio Nr. #{{ticket.id}}. Pranešime, kai tik elektra bus atstatyta. "
                "— {{agent.name}}",
            ),
            "en": (
                "Outage: crew dispatched",
                "Hi {{contact.name}}, we've logged the outage and a crew is on the way. Your "
                "reference is #{{ticket.id}}. We'll let you know as soon as power is back. "
                "— {{agent.name}}",
            ),
            "zh": (
                "停电：已派抢修",
                "{{contact.name}}您好！停电已登记，抢修人员已出发，工单号 #{{ticket.id}}。"
                "恢复供电后"
                "我们会第一时间通知您。——{{agent.name}}",
            ),
        },
    ),
    (
        "outage-map",
        "outages",
        {
            "ru": (
                "Карта отключений",
                "Актуальные отключения и время восстановления — на карте: " + OUTAGE_MAP,
            ),
            "pt": (
                "Mapa de interrupções",
                "Interrupções em curso e previsão de reposição no mapa: " + OUTAGE_MAP,
            ),
            "lt": (
                "Atjungimų žemėlapis",
                "Aktualūs atjungimai ir numatomas atstatymo laikas žemėlapyje: " + OUTAGE_MAP,
            ),
            "en": (
                "Outage map",
                "Current outages and estimated restoration times are on our map: " + OUTAGE_MAP,
            ),
            "zh": ("停电地图", "当前停电范围及预计恢复时间请查看停电地图：" + OUTAGE_MAP),
        },
    ),
    (
        "safety-wire",
        "outages",
        {
            "ru": (
                "Безопасность: оборванный провод",
                "{{contact.name}}, не подходите к проводу ближе 8 метров и не подпускайте детей "
                "и животных — считайте, что он под напряжением. Аварийная бригада уже выехала. "
                "Если кто-то пострадал — звоните 112.",
            ),
            "pt": (
                "Segurança: fio caído",
                "{{contact.name}}, não se aproxime do fio (pelo menos 8 metros) e afaste crianças "
                "e animais — considere-o sempre com tensão. A equipa de emergência já vai a "
                "caminho. Se houver feridos, ligue 112.",
            ),
            "lt": (
                "Saugumas: nutrūkęs laidas",
                "{{contact.name}}, nesiartinkite prie laido arčiau nei 8 metrai ir neprileiskite "
                "vaikų bei gyvūnų — laikykite, kad jis su įtampa. Avarinė brigada jau vyksta. Jei "
                "yra nukentėjusių — skambinkite 112.",
            ),
            "en": (
                "Safety: wire down",
                "{{contact.name}}, please stay at least 8 metres (25 ft) away from the wire and "
                "keep children and pets away — always treat it as live. An emergency crew is on "
                "its way. If anyone is hurt, call the emergency services now.",
            ),
            "zh": (
                "安全：电线掉落",
                "{{contact.name}}您好，请勿靠近电线（至少保持8米），让小孩和宠物远离——请视为带电。"
                "应急抢修队已出发。如有人员受伤，请立即拨打120。",
            ),
        },
    ),
    (
        "meter-how",
        "meter-readings",
        {
            "ru": (
                "Как передать показания",
                "{{contact.name}}, показания можно передать прямо здесь: напишите номер лицевого "
                "счёта и цифры счётчика (для двухтарифного — день и ночь), с 15 по 25 число. "
                "Или в личном кабинете " + PORTAL + " .",
            ),
            "pt": (
                "Como enviar a leitura",
                "{{contact.name}}, pode enviar a leitura aqui mesmo: escreva o CPE e os números do "
                "contador (bi-horário: vazio e fora de vazio), entre os dias 15 e 25. Ou na área "
                "de cliente " + PORTAL + " .",
            ),
            "lt": (
                "Kaip deklaruoti rodmenis",
                "{{contact.name}}, rodmenis galite atsiųsti čia: parašykite abonentinį numerį ir "
                "skaitiklio skaičius (dviejų zonų — dieninį ir naktinį), nuo 15 iki 25 d. Arba "
                "savitarnoje " + PORTAL + " .",
            ),
            "en": (
                "How to submit a reading",
                "{{contact.name}}, you can send your reading right here: your account number and "
                "the numbers on the meter (day and night for a two-rate meter), between the 15th "
                "and 25th. Or online at " + PORTAL + " .",
            ),
            "zh": (
                "如何上报读数",
                "{{contact.name}}您好，"
                "每月15–25日可直接在这里发送户号和电表读数（峰谷表请分别提供），"
                "也可在网上营业厅 " + PORTAL + " 上报。",
            ),
        },
    ),
    (
        "payment-received",
        "billing",
        {
            "ru": (
                "Платёж получен",
                "{{contact.name}}, платёж по лицевому счёту {{contact.account}} поступил, "
                "задолженности нет. Напоминание можно не учитывать. Спасибо!",
            ),
            "pt": (
                "Pagamento recebido",
                "{{contact.name}}, o pagamento do CPE {{contact.account}} foi recebido e não há "
                "valores em dívida. Pode ignorar o lembrete. Obrigado!",
            ),
            "lt": (
                "Mokėjimas gautas",
                "{{contact.name}}, mokėjimas pagal abon. Nr. {{contact.account}} gautas, skolos "
                "nėra. Priminimo galite nepaisyti. Ačiū!",
            ),
            "en": (
                "Payment received",
                "{{contact.name}}, the payment on account {{contact.account}} has arrived and "
                "nothing is outstanding. Please ignore the reminder. Thank you!",
            ),
            "zh": (
                "缴费已到账",
                "{{contact.name}}您好，户号{{contact.account}}的缴费已到账，目前无欠费，"
                "提醒短信请忽略。谢谢！",
            ),
        },
    ),
    (
        "payment-plan",
        "billing",
        {
            "ru": (
                "Рассрочка",
                "{{contact.name}}, можем оформить рассрочку на 3 месяца: первый платёж — треть "
                "суммы, остальное равными частями. Пока график соблюдается, отключения не будет. "
                "Подтвердите, и мы пришлём соглашение.",
            ),
            "pt": (
                "Plano de pagamento",
                "{{contact.name}}, podemos fazer um plano em 3 prestações: a primeira é um terço "
                "do valor, o resto em partes iguais. Cumprindo o plano, não há corte. Confirme e "
                "enviamos o acordo.",
            ),
            "lt": (
                "Mokėjimo grafikas",
                "{{contact.name}}, galime išdėstyti skolą 3 mėnesiams: pirma įmoka — trečdalis "
                "sumos, likusi dalis lygiomis dalimis. Laikantis grafiko, elektra nebus "
                "atjungta. Patvirtinkite, ir atsiųsime susitarimą.",
            ),
            "en": (
                "Payment plan",
                "{{contact.name}}, we can spread this over 3 months: a third now and the rest in "
                "equal parts. As long as the plan is kept, there will be no disconnection. Reply "
                "to confirm and we'll send the agreement.",
            ),
            "zh": (
                "分期缴费",
                "{{contact.name}}您好，可以为您办理3个月分期：首期缴纳三分之一，其余平均分摊。"
                "按期缴费"
                "不会停电。请回复确认，我们将发送协议。",
            ),
        },
    ),
    (
        "tariff-night",
        "contracts",
        {
            "ru": (
                "Ночной тариф",
                "{{contact.name}}, ночной тариф (23:00–07:00) — 3,12 руб./кВт·ч, дневной — 6,24 "
                "руб./кВт·ч. Переход выгоден, если ночью вы тратите больше трети электроэнергии "
                "(бойлер, стиральная машина, электромобиль). Нужен двухтарифный счётчик.",
            ),
            "pt": (
                "Tarifa bi-horária",
                "{{contact.name}}, na bi-horária o kWh no vazio (22h–8h) custa 0,11 € e fora de "
                "vazio 0,21 €. Compensa se gastar mais de um terço à noite (termoacumulador, "
                "máquinas, carro elétrico). A mudança é gratuita com contador bi-horário.",
            ),
            "lt": (
                "Naktinis tarifas",
                "{{contact.name}}, naktinis tarifas (23–7 val.) — 0,17 €/kWh, dieninis — 0,27 "
                "€/kWh. Apsimoka, jei naktį suvartojate daugiau nei trečdalį elektros (boileris, "
                "skalbimo mašina, elektromobilis). Reikia dviejų laiko zonų skaitiklio.",
            ),
            "en": (
                "Night rate explained",
                "{{contact.name}}, the night rate (11pm–7am) is $0.12/kWh and the day rate "
                "$0.27/kWh. It pays off if you use more than about a third of your electricity "
                "at night (water heater, washing machine, EV). You need a two-rate meter.",
            ),
            "zh": (
                "峰谷电价说明",
                "{{contact.name}}您好，谷时（23:00–7:00）电价0.31元/度，峰时0.62元/度。夜间用电超过"
                "三分之一（热水器、洗衣机、电动车）比较划算，需要分时电表。",
            ),
        },
    ),
    (
        "moving-house",
        "contracts",
        {
            "ru": (
                "Переезд: документы",
                "{{contact.name}}, для переоформления договора нужны: паспорт, документ о "
                "собственности и показания счётчика на день переезда.",
            ),
            "pt": (
                "Mudança de casa: documentos",
                "{{contact.name}}, para mudar o contrato precisamos do cartão de cidadão, do "
                "documento de propriedade ou arrendamento e da leitura no dia da mudança.",
            ),
            "lt": (
                "Persikraustymas: dokumentai",
                "{{contact.name}}, sutarčiai perrašyti reikia asmens dokumento, nuosavybės "
                "dokumento ir skaitiklio rodmenų persikraustymo dieną.",
            ),
            "en": (
                "Moving house: documents",
                "{{contact.name}}, to move the contract we need a photo ID, proof of ownership or "
                "tenancy, and the meter reading on moving day.",
            ),
            "zh": (
                "搬家过户：所需资料",
                "{{contact.name}}您好，办理过户需要身份证、房产证或租赁合同，"
                "以及搬家当天的电表读数。",
            ),
        },
    ),
    (
        "closing",
        None,
        {
            "ru": (
                "Завершение диалога",
                "Рады были помочь, {{contact.name}}! Если появятся вопросы — пишите сюда же. "
                "Хорошего дня! {{agent.name}}",
            ),
            "pt": (
                "Despedida",
                "Foi um prazer ajudar, {{contact.name}}! Se precisar, escreva aqui. Bom dia! "
                "{{agent.name}}",
            ),
            "lt": (
                "Pokalbio pabaiga",
                "Džiaugiamės galėję padėti, {{contact.name}}! Jei kils klausimų — rašykite čia. "
                "Geros dienos! {{agent.name}}",
            ),
            "en": (
                "Closing",
                "Glad we could help, {{contact.name}}! If anything else comes up, just reply "
                "here. Have a good day! {{agent.name}}",
            ),
            "zh": (
                "结束语",
                "很高兴为您服务，{{contact.name}}！如有其他问题请随时在这里留言，祝您生活愉快！"
                "{{agent.name}}",
            ),
        },
    ),
]

# Internal notes, as agents write them (mostly in the team's working language, English).
NOTES: dict[str, list[str]] = {
    "outage": [
        "Feeder F-{feeder} tripped, SCADA shows the breaker open at substation {substation}.",
        "Several reports from the {street} area — same fault, linked in the crew job.",
        "Crew {crew} on site, ETA for restoration ~2h.",
        "Клиент пишет повторно, очень недоволен. Дал номер карты отключений.",
    ],
    "safety": [
        "Emergency crew {crew} dispatched, customer asked to keep distance. Police informed.",
        "Control room isolated the line at {hour}:20.",
    ],
    "bill": [
        "Estimated reads for 3 months in a row — asked for an actual reading.",
        "Checked the payment history: no missed payments, the jump is the estimate.",
    ],
    "paid": [
        "Payment found in the bank file of yesterday, not yet allocated. Allocated manually.",
        "Mokėjimas rastas, bet priskirtas kitam abonentui — perkėliau.",
    ],
    "meter": ["Reading lower than the previous one — probably transposed digits."],
    "debt": [
        "Small child in the household — no disconnection until the plan is agreed.",
        "Offered the 3-month plan per policy D-4.",
    ],
    "contract": ["Waiting for the ownership document before changing the account holder."],
    "tariff": ["Customer has a single-rate meter; tariff change needs a meter swap (free)."],
    "x": ["Public post — answer publicly first, then move to DM."],
}

TRANSFER_NOTES: dict[tuple[str, str], list[str]] = {
    ("outage", "billing"): [
        "Customer also asks about compensation for spoiled food — Billing, please."
    ],
    ("bill", "meter-readings"): [
        "The bill is right if the reading is right — please check the meter history."
    ],
    ("bill", "contracts"): [
        "Customer wants a cheaper tariff after the bill question. Contracts, please."
    ],
    ("paid", "billing"): ["Payment allocation issue, Billing please."],
    ("meter", "billing"): ["Reading corrected; the bill needs re-issuing. Over to Billing."],
    ("tariff", "meter-readings"): [
        "Tariff change needs a two-rate meter — meter team to book the swap."
    ],
    ("contract", "billing"): ["Moving out with an open balance — Billing to issue the final bill."],
    ("debt", "contracts"): [
        "Customer wants to end the contract along with the plan. Contracts to follow up."
    ],
    ("maintenance", "contracts"): [
        "Business customer asks for compensation for the planned work. Contracts, please."
    ],
    ("other", "billing"): ["Question is really about a payment. Billing please."],
}

CALL_SUMMARIES: dict[str, list[str]] = {
    "bill": [
        "Called back and explained the estimated reading; customer will send a photo of the meter.",
        "Customer called, upset about the bill. Explained the estimate, promised a recalculation.",
    ],
    "debt": [
        "Customer called about the disconnection notice; agreed on a 3-month plan.",
        "Outbound call: confirmed the payment plan and the first instalment date.",
    ],
    "outage": [
        "Outbound call to confirm power is back — confirmed.",
        "Customer called, elderly neighbour alone without power. Crew informed.",
    ],
    "safety": ["Called the customer to check the area is cordoned off until the crew arrives."],
}

# E-mail subjects per story kind (other channels have none).
SUBJECTS: dict[str, dict[str, str]] = {
    "outage": {
        "ru": "Нет света",
        "pt": "Sem luz",
        "lt": "Nėra elektros",
        "en": "Power cut",
        "zh": "停电",
    },
    "safety": {
        "ru": "СРОЧНО: оборван провод",
        "pt": "URGENTE: fio caído",
        "lt": "SKUBU: nutrūkęs laidas",
        "en": "URGENT: wire down",
        "zh": "紧急：电线掉落",
    },
    "bill": {
        "ru": "Перерасчёт счёта",
        "pt": "Reclamação fatura",
        "lt": "Dėl sąskaitos",
        "en": "Bill dispute",
        "zh": "账单异议",
    },
    "paid": {
        "ru": "Оплата не отображается",
        "pt": "Pagamento já efetuado",
        "lt": "Mokėjimas neįskaitytas",
        "en": "Already paid",
        "zh": "已缴费仍提示欠费",
    },
    "meter": {
        "ru": "Показания счётчика",
        "pt": "Leitura do contador",
        "lt": "Skaitiklio rodmenys",
        "en": "Meter reading",
        "zh": "电表读数",
    },
    "meter_how": {
        "ru": "Передача показаний",
        "pt": "Envio de leituras",
        "lt": "Rodmenų deklaravimas",
        "en": "Submitting readings",
        "zh": "读数上报",
    },
    "tariff": {
        "ru": "Тариф день/ночь",
        "pt": "Tarifa bi-horária",
        "lt": "Naktinis tarifas",
        "en": "Night rate",
        "zh": "峰谷电价",
    },
    "contract": {
        "ru": "Переоформление договора",
        "pt": "Mudança de titular",
        "lt": "Sutarties perrašymas",
        "en": "Moving house",
        "zh": "过户",
    },
    "maintenance": {
        "ru": "Плановые работы",
        "pt": "Trabalhos programados",
        "lt": "Planiniai darbai",
        "en": "Planned work",
        "zh": "计划检修",
    },
    "debt": {
        "ru": "Рассрочка долга",
        "pt": "Aviso de corte",
        "lt": "Įspėjimas dėl atjungimo",
        "en": "Disconnection notice",
        "zh": "欠费停电通知",
    },
    "other": {
        "ru": "Вопрос",
        "pt": "Pedido de informação",
        "lt": "Klausimas",
        "en": "Question",
        "zh": "咨询",
    },
}

# How people open and sign an e-mail.
EMAIL_FRAME: dict[str, tuple[str, str]] = {
    "ru": ("Добрый день!", "С уважением,"),
    "pt": ("Bom dia,", "Cumprimentos,"),
    "lt": ("Laba diena,", "Pagarbiai,"),
    "en": ("Hello,", "Kind regards,"),
    "zh": ("您好：", "此致"),
}
