//! The phrases the analysis looks for, in English, German, French and Spanish (matched
//! as token sequences) and Japanese (matched as substrings, since it has no spaces).
//!
//! All Latin-script phrases go into one table keyed by their first token, built once,
//! so a sentence costs one hash lookup per token whatever the number of phrases: the
//! analysis must stay far below a millisecond per thread (10,000 threads in well under
//! a second). Phrases are written lowercase with ASCII apostrophes; `*` stands for any
//! one token ("nous aimerions * savoir" matches "nous aimerions également savoir").

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

use super::text::tokenize;

/// What a phrase signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    /// Interrogative word order asking for something: "could you", "könnten Sie".
    Ask,
    /// "please", "bitte", "merci de", "veuillez", "por favor".
    Please,
    /// Polite formulas that are no request: "please find attached", "veuillez agréer".
    PleaseNot,
    /// "let me know", "sag mir Bescheid", "dites-moi", "avísame".
    LetMeKnow,
    /// Indirect questions and polite requests: "I was wondering if", "j'aimerais savoir",
    /// "I'd appreciate it if", "ich wäre Ihnen dankbar".
    Indirect,
    /// "I need you to", "need your".
    NeedYou,
    /// "I need", "wir brauchen": a request only together with a deadline ("I need a
    /// written report by Monday").
    NeedIfDue,
    /// Offers and sign-off formulas that ask nothing: "let me know if you have any
    /// questions", "n'hésitez pas".
    Boiler,
    /// Small talk: "How are you?".
    Pleasantry,
    /// A first-person promise; what was promised follows the phrase.
    Commit,
    /// "let me": a promise only before a verb of doing ("let me check"), not "let me know".
    CommitLetMe,
    /// "you'll have", "I can have": a promise only together with a date.
    CommitIfDue,
    /// "never mind", "hat sich erledigt": earlier requests are withdrawn.
    Withdraw,
    /// "urgent", "ASAP", "dringend".
    Urgent,
    /// "this is urgent", "c'est urgent": urgent even outside a request.
    UrgentStatement,
    /// "no rush", "keine Eile", "pas urgent".
    NotUrgent,
    Greeting,
    Closing,
    /// A deadline preposition: "by", "before", "bis", "avant", "d'ici", "antes de".
    Prep,
    /// "since", "seit", "depuis", "desde": what follows is no deadline.
    Since,
    /// A time expression (see [`Time`]).
    Time(Time),
    /// A month name, for dates such as "December 19" or "19. Dezember".
    Month(u8),
}

/// Time expressions, resolved against the message's date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Time {
    Today,
    Tomorrow,
    DayAfter,
    ThisWeek,
    NextWeek,
    NextMonth,
    /// Monday = 0.
    Weekday(u8),
    /// "early in the New Year", "before the holidays": a due date without a day.
    Vague,
    Asap,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Hit<T> {
    pub tag: T,
    /// Token range.
    pub start: usize,
    pub end: usize,
}

// ---------------------------------------------------------------------------
// Tables

#[rustfmt::skip]
const ASK: &[&str] = &[
    // en
    "could you", "can you", "would you", "will you", "could we", "can we", "would you mind",
    "do you mind", "could i ask you", "can i ask you", "may i ask you", "is it possible",
    "would it be possible", "any chance you", "any chance we", "are you able to",
    "would you be able to", "i was hoping you could", "i'm hoping you can",
    "i am hoping you can", "would you be willing", "shall we", "should we",
    // de
    "könnten sie", "können sie", "könntest du", "kannst du", "würden sie", "würdest du",
    "wären sie so", "kann ich sie bitten", "darf ich sie bitten", "dürfte ich sie bitten",
    "könnt ihr", "könntet ihr",
    // fr
    "pourriez vous", "pouvez vous", "peux tu", "pourrais tu", "voudriez vous", "voulez vous",
    "auriez vous", "serait il possible", "est ce que vous pourriez", "est ce que tu pourrais",
    "vous serait il possible", "pourrions nous", "pouvons nous",
    // es
    "podrías", "podría", "puedes", "puede usted", "podrían", "pueden", "te importaría",
    "le importaría", "sería posible",
    // colloquial and soft forms (en, de, fr, es)
    "can i get", "could i get", "mind sending", "mind sharing", "mind taking", "mind looking",
    "mind checking", "mind forwarding", "do you have a minute to", "magst du", "mögen sie",
    "hättest du", "hätten sie", "wärst du so", "tu pourrais", "vous pourriez", "tu peux",
    "est ce que tu peux", "est ce que vous pouvez", "me puedes", "me podrías",
];

#[rustfmt::skip]
const PLEASE: &[&str] = &[
    "please", "pls", "plz", "kindly", "bitte", "veuillez", "merci de", "merci d'",
    "merci également de", "merci aussi de", "je vous remercie de bien vouloir",
    "je te remercie de", "por favor", "s' il vous plaît", "s' il te plaît", "wir bitten sie",
    "ich bitte sie", "wir bitten um", "ich bitte um", "wir möchten sie bitten",
    "ich möchte sie bitten", "bitten wir sie", "bitte ich sie",
];

#[rustfmt::skip]
const PLEASE_NOT: &[&str] = &[
    "please find", "please see", "please note", "please ignore", "please disregard",
    "please feel free", "please don't hesitate", "please do not hesitate", "please be aware",
    "please be advised", "please accept", "please excuse", "please forgive",
    "please consider the environment", "bitte beachten", "bitte entschuldigen", "bitte zögern",
    "bitte schön", "bitte sehr", "bitte gerne", "veuillez trouver", "veuillez agréer",
    "veuillez recevoir", "veuillez noter", "veuillez nous excuser", "veuillez m' excuser",
    "merci de votre", "merci de vos", "merci de ta", "merci de tes", "merci de ton",
    "merci de m' avoir", "merci de nous avoir", "merci d' avoir", "merci de la", "merci de l'",
    "merci de ce", "merci de cette", "merci d' avance",
];

#[rustfmt::skip]
const LET_ME_KNOW: &[&str] = &[
    "let me know", "let us know", "lmk", "tell me", "tell us", "get back to me",
    "get back to us", "drop me a line", "geben sie mir bescheid", "gib mir bescheid",
    "sag mir bescheid", "sagen sie mir", "sag mir", "lassen sie mich wissen",
    "lass mich wissen", "teilen sie mir", "teilen sie uns", "teil mir", "melden sie sich",
    "melde dich", "dites moi", "dis moi", "faites moi savoir", "fais moi savoir", "avísame",
    "avíseme", "avísanos", "dime", "dígame", "confírmame", "confírmeme", "cuéntame",
];

#[rustfmt::skip]
const INDIRECT: &[&str] = &[
    // en
    "i was wondering", "i wonder if", "i wonder whether", "i'd like to know",
    "i would like to know", "i'd love to know", "i'd love to hear", "i'd like to hear",
    "we'd like to know", "we would like to know", "i'm curious whether", "i'm curious if",
    "i'd appreciate it if", "i would appreciate it if", "i'd appreciate", "i would appreciate",
    "i'd be grateful if", "i would be grateful if", "it would be great if you",
    "it'd be great if you", "it would be helpful if you", "would be great if you could",
    // de
    "ich wüsste gerne", "ich wüsste gern", "ich würde gerne wissen", "ich würde gern wissen",
    "wir würden gerne wissen", "mich würde interessieren", "es würde mich interessieren",
    "ich wäre ihnen dankbar", "ich wäre ihnen * dankbar", "ich wäre dir dankbar",
    "ich wäre dir * dankbar", "wir wären ihnen dankbar", "wir wären ihnen * dankbar",
    "ich würde mich freuen , wenn sie", "ich würde mich freuen , wenn du",
    // fr
    "je me demandais", "j' aimerais savoir", "je voudrais savoir", "nous aimerions savoir",
    "nous aimerions * savoir", "j' aimerais * savoir", "nous voudrions savoir",
    "je vous serais reconnaissant", "je te serais reconnaissant",
    "nous vous serions reconnaissants",
    // es
    "me gustaría saber", "me gustaría * saber", "quisiera saber", "quería saber",
    "queríamos saber", "nos gustaría saber", "le agradecería", "te agradecería",
    "les agradecería",
    // soft requests (en, de, fr, es)
    "would love your", "i'd love your", "would love to get your", "would love to hear your",
    "would appreciate your", "curious whether", "curious if", "curious what", "curious how",
    "wondering whether", "wondering if", "keen to hear", "keen to get your",
    "would be great to get your", "would be good to get your", "any update", "any updates",
    "any news on", "waiting for your", "waiting on your", "awaiting your", "wäre super , wenn",
    "wäre super wenn", "wäre toll , wenn", "wäre toll wenn", "wäre schön , wenn",
    "wäre gut , wenn", "wäre klasse , wenn", "wäre prima , wenn", "würde mich freuen , wenn",
    "ce serait super si", "ce serait top si", "ce serait bien si", "j' aimerais avoir",
    "me gustaría que", "te agradecería que", "sería genial si",
];

#[rustfmt::skip]
const NEED_YOU: &[&str] = &[
    "i need you to", "we need you to", "i need your", "we need your", "need your",
    "ich brauche ihre", "ich brauche deine", "wir brauchen ihre", "wir brauchen deine",
    "j' ai besoin de votre", "j' ai besoin de ton", "j' ai besoin que vous",
    "j' ai besoin que tu", "nous avons besoin de votre", "necesito que", "necesito tu",
    "necesito su", "necesitamos tu", "necesitamos su", "necesitamos que",
];

#[rustfmt::skip]
const NEED_IF_DUE: &[&str] = &[
    "i need", "we need", "i'd need", "we'd need", "i'll need", "we'll need", "i still need",
    "we still need", "ich brauche", "wir brauchen", "j' ai besoin", "nous avons besoin", "necesito",
    "necesitamos",
];

#[rustfmt::skip]
const BOILER: &[&str] = &[
    // en
    "if you have any questions", "if you have questions", "if you have any",
    "if you need anything", "if you need any", "if there's anything", "if there is anything",
    "if anything comes up", "should you have any", "should you need", "don't hesitate",
    "do not hesitate", "feel free", "happy to help", "happy to answer",
    "looking forward to hearing from you", "look forward to hearing from you",
    "hope this helps", "any questions ?", "questions ?",
    // de
    "bei fragen", "bei rückfragen", "falls sie fragen haben", "falls du fragen hast",
    "stehe ich ihnen gerne", "stehe ich gerne", "stehen wir ihnen gerne", "zögern sie nicht",
    "melden sie sich gerne", "melde dich gerne",
    // fr
    "n' hésitez pas", "n' hésite pas", "si vous avez des questions", "pour toute question",
    "je reste à votre disposition", "je reste à ta disposition", "restant à votre disposition",
    // es
    "no dudes en", "no dude en", "si tienes alguna pregunta", "si tiene alguna pregunta",
    "quedo a tu disposición", "quedo a su disposición", "quedo atento", "quedo atenta",
    "quedo pendiente", "quedamos pendientes",
];

#[rustfmt::skip]
const PLEASANTRY: &[&str] = &[
    "how are you", "how are things", "how's it going", "how is it going", "how have you been",
    "how was your weekend", "how was your holiday", "how were the holidays",
    "how was your trip", "hope you're well", "hope you are well", "hope all is well",
    "hope you're doing well", "wie geht es", "wie geht's", "wie gehts", "comment allez vous",
    "comment vas tu", "ça va", "qué tal", "cómo estás", "cómo está",
];

#[rustfmt::skip]
const COMMIT: &[&str] = &[
    // en
    "i will", "i'll", "we will", "we'll", "i am going to", "i'm going to", "we are going to",
    "we're going to", "i'm gonna", "i plan to", "i'm planning to", "i am planning to",
    "we plan to", "we're planning to", "we are planning to", "i intend to", "we intend to",
    "i promise to", "i commit to", "we commit to", "i'm committed to", "i am committed to",
    "we're committed to", "we are committed to", "i shall", "we shall",
    // de
    "ich werde", "wir werden", "werde ich", "werden wir", "ich kümmere mich", "wir kümmern uns",
    "kümmere ich mich", "kümmern wir uns", "ich melde mich", "melde ich mich", "wir melden uns",
    "melden wir uns", "ich schicke", "ich sende", "ich schick", "schicke ich", "sende ich",
    "wir schicken", "wir senden", "ich gebe ihnen bescheid", "ich gebe dir bescheid",
    "ich gebe euch bescheid", "ich rufe", "ich kläre", "ich prüfe", "ich buche",
    "ich reserviere", "ich bereite", "ich erstelle", "ich leite", "ich übernehme",
    "ich organisiere", "ich liefere", "wir liefern", "ich bringe", "ich besorge",
    "ich informiere",
    // fr
    "je vais", "nous allons", "on va", "je m' en occupe", "je m' en charge", "je m' engage",
    "nous nous engageons", "je reviens vers vous", "je reviens vers toi",
    "nous revenons vers vous", "je m' occupe", "nous nous occupons", "je te tiens au courant",
    "je vous tiens au courant",
    // es
    "voy a", "vamos a", "me encargo", "nos encargamos", "me ocupo", "nos ocupamos", "te envío",
    "le envío", "les envío", "te mando", "le mando", "te lo envío", "se lo envío",
    "te lo mando", "se lo mando", "te paso", "te confirmo", "le confirmo", "te escribo",
    "te llamo", "le llamo",
    // present tense used as future (fr, es)
    "je te fais un retour", "je vous fais un retour", "je vous tiens informé",
    "je te tiens informé", "je vous tiendrai informé", "te aviso", "le aviso", "os aviso",
    "lo reviso", "lo miro", "te lo confirmo", "te respondo", "te contesto", "me pongo con ello",
    "te lo preparo",
];

#[rustfmt::skip]
const COMMIT_IF_DUE: &[&str] = &[
    "you'll have", "you will have", "i can have", "we can have", "i can get", "we can get",
    "you'll get", "you will get",
    // present tense, a promise only with a date (fr, es)
    "je t' envoie", "je vous envoie", "je te confirme", "je vous confirme", "je regarde",
    "je vérifie", "te digo", "lo hago", "te lo paso", "you'll receive", "you will receive",
];

#[rustfmt::skip]
const WITHDRAW: &[&str] = &[
    "never mind", "nevermind", "scratch that", "disregard my", "ignore my", "please ignore",
    "please disregard", "sorted it", "figured it out", "found it", "no longer need",
    "no longer needed", "no need to reply", "no reply needed", "all sorted",
    "hat sich erledigt", "hat sich schon erledigt", "vergiss es", "vergessen sie meine",
    "ist geklärt", "laisse tomber", "oubliez ma", "oublie ma", "c' est réglé", "j' ai trouvé",
    "olvídalo", "ya lo encontré", "ya está resuelto", "ya lo resolví",
];

#[rustfmt::skip]
const URGENT: &[&str] = &[
    "urgent", "urgently", "asap", "as soon as possible", "time sensitive", "time critical",
    "immediately", "right away", "emergency", "high priority", "top priority", "dringend",
    "dringende", "dringenden", "eilig", "eilt", "umgehend", "sofort", "schnellstmöglich",
    "so schnell wie möglich", "au plus vite", "dès que possible", "immédiatement", "en urgence",
    "urgente", "urgentes", "lo antes posible", "cuanto antes", "inmediatamente", "de inmediato",
];

#[rustfmt::skip]
const URGENT_STATEMENT: &[&str] = &[
    "this is urgent", "it's urgent", "it is urgent", "urgent :", "urgent !", "c' est urgent",
    "es urgente", "ist dringend", "es ist dringend", "dringend :", "eilt sehr", "urgente :",
];

#[rustfmt::skip]
const NOT_URGENT: &[&str] = &[
    "no rush", "no hurry", "not urgent", "isn't urgent", "no urgency",
    "whenever you get a chance", "whenever you can", "when you get a chance",
    "at your convenience", "no pressure", "keine eile", "nicht dringend", "pas urgent",
    "rien d' urgent", "pas pressé", "sin prisa", "no hay prisa", "no corre prisa",
];

#[rustfmt::skip]
const GREETING: &[&str] = &[
    "hi", "hello", "hey", "dear", "good morning", "good afternoon", "morning", "hallo",
    "guten tag", "guten morgen", "sehr geehrte", "sehr geehrter", "liebe", "lieber", "moin",
    "servus", "bonjour", "salut", "cher", "chère", "hola", "estimado", "estimada",
    "buenos días", "buenas tardes", "hi all", "hello all",
];

#[rustfmt::skip]
const CLOSING: &[&str] = &[
    "best", "best regards", "kind regards", "regards", "warm regards", "thanks", "thank you",
    "thx", "cheers", "sincerely", "mit freundlichen grüßen", "mit freundlichem gruß",
    "viele grüße", "beste grüße", "liebe grüße", "freundliche grüße", "gruß", "grüße", "danke",
    "cordialement", "bien cordialement", "bien à vous", "bonne journée", "bonne soirée",
    "à plus", "merci", "un saludo", "saludos", "atentamente", "gracias",
];

#[rustfmt::skip]
const PREP: &[&str] = &[
    "by", "before", "until", "till", "no later than", "due", "bis", "bis zum", "bis zur",
    "bis spätestens", "spätestens", "vor", "avant", "avant le", "d' ici", "d' ici le",
    "jusqu' au", "antes del", "antes de", "hasta el", "para el",
];

#[rustfmt::skip]
const SINCE: &[&str] = &[
    "since", "seit", "depuis", "desde",
];

const TIMES: &[(&str, Time)] = &[
    ("today", Time::Today),
    ("tonight", Time::Today),
    ("today's", Time::Today),
    ("tonight's", Time::Today),
    ("this afternoon", Time::Today),
    ("this morning", Time::Today),
    ("this evening", Time::Today),
    ("later today", Time::Today),
    ("eod", Time::Today),
    ("cob", Time::Today),
    ("end of day", Time::Today),
    ("end of the day", Time::Today),
    ("end of today", Time::Today),
    ("close of business", Time::Today),
    ("end of business", Time::Today),
    ("heute", Time::Today),
    ("heute noch", Time::Today),
    ("heute abend", Time::Today),
    ("aujourd'hui", Time::Today),
    ("ce soir", Time::Today),
    ("fin de journée", Time::Today),
    ("fin de la journée", Time::Today),
    ("hoy", Time::Today),
    ("esta tarde", Time::Today),
    ("esta noche", Time::Today),
    ("tomorrow", Time::Tomorrow),
    ("tomorrow's", Time::Tomorrow),
    ("morgen", Time::Tomorrow),
    ("demain", Time::Tomorrow),
    ("mañana", Time::Tomorrow),
    ("day after tomorrow", Time::DayAfter),
    ("übermorgen", Time::DayAfter),
    ("après demain", Time::DayAfter),
    ("pasado mañana", Time::DayAfter),
    ("this week", Time::ThisWeek),
    ("end of the week", Time::ThisWeek),
    ("end of week", Time::ThisWeek),
    ("end of this week", Time::ThisWeek),
    ("eow", Time::ThisWeek),
    ("diese woche", Time::ThisWeek),
    ("dieser woche", Time::ThisWeek),
    ("ende der woche", Time::ThisWeek),
    ("ende dieser woche", Time::ThisWeek),
    ("cette semaine", Time::ThisWeek),
    ("la fin de la semaine", Time::ThisWeek),
    ("fin de la semaine", Time::ThisWeek),
    ("esta semana", Time::ThisWeek),
    ("next week", Time::NextWeek),
    ("early next week", Time::NextWeek),
    ("end of next week", Time::NextWeek),
    ("nächste woche", Time::NextWeek),
    ("nächster woche", Time::NextWeek),
    ("kommende woche", Time::NextWeek),
    ("la semaine prochaine", Time::NextWeek),
    ("semaine prochaine", Time::NextWeek),
    ("la fin de la semaine prochaine", Time::NextWeek),
    ("fin de la semaine prochaine", Time::NextWeek),
    ("la próxima semana", Time::NextWeek),
    ("la semana que viene", Time::NextWeek),
    ("next month", Time::NextMonth),
    ("nächsten monat", Time::NextMonth),
    ("le mois prochain", Time::NextMonth),
    ("el mes que viene", Time::NextMonth),
    ("el próximo mes", Time::NextMonth),
    ("early in the new year", Time::Vague),
    ("in the new year", Time::Vague),
    ("early next year", Time::Vague),
    ("next year", Time::Vague),
    ("before the holidays", Time::Vague),
    ("after the holidays", Time::Vague),
    ("before year end", Time::Vague),
    ("before the end of the year", Time::Vague),
    ("by year end", Time::Vague),
    ("end of the month", Time::Vague),
    ("end of the quarter", Time::Vague),
    ("vor weihnachten", Time::Vague),
    ("nach den feiertagen", Time::Vague),
    ("avant les fêtes", Time::Vague),
    ("shortly", Time::Vague),
    ("asap", Time::Asap),
    ("as soon as possible", Time::Asap),
    ("umgehend", Time::Asap),
    ("dès que possible", Time::Asap),
    ("lo antes posible", Time::Asap),
];

const WEEKDAYS: &[&[&str]] = &[
    &["monday", "monday's", "montag", "lundi", "lunes"],
    &["tuesday", "tuesday's", "dienstag", "mardi", "martes"],
    &[
        "wednesday",
        "wednesday's",
        "mittwoch",
        "mercredi",
        "miércoles",
    ],
    &["thursday", "thursday's", "donnerstag", "jeudi", "jueves"],
    &["friday", "friday's", "freitag", "vendredi", "viernes"],
    &["saturday", "saturday's", "samstag", "samedi", "sábado"],
    &["sunday", "sunday's", "sonntag", "dimanche", "domingo"],
];

const MONTHS: &[&[&str]] = &[
    &[
        "january", "jan", "januar", "jänner", "janvier", "janv", "enero",
    ],
    &["february", "feb", "februar", "février", "févr", "febrero"],
    &["march", "märz", "mars", "marzo"],
    &["april", "apr", "avril", "abril"],
    &["may", "mai", "mayo"],
    &["june", "jun", "juni", "juin", "junio"],
    &["july", "jul", "juli", "juillet", "julio"],
    &["august", "aug", "août", "agosto"],
    &[
        "september",
        "sep",
        "sept",
        "septembre",
        "septiembre",
        "setiembre",
    ],
    &["october", "oct", "oktober", "octobre", "octubre"],
    &["november", "nov", "novembre", "noviembre"],
    &[
        "december",
        "dec",
        "dezember",
        "décembre",
        "déc",
        "diciembre",
    ],
];

// Japanese, matched as substrings of the lowercased sentence.

#[rustfmt::skip]
pub(super) const JA_QUESTION_ENDINGS: &[&str] = &[
    "でしょうか", "ますか", "ですか", "ませんか", "ましたか", "でしたか", "かな", "だろうか",
];
#[rustfmt::skip]
pub(super) const JA_REQUEST_ENDINGS: &[&str] = &[
    "ください", "下さい", "いただければ幸いです", "いただけると幸いです", "いただけると助かります", "いただければと思います", "頂ければ幸いです",
    "頂けると幸いです", "をお願いします", "をお願いいたします", "をお願い致します", "をお願い申し上げます", "いただけますと幸いです", "いただけましたら幸いです",
    "いただけますと助かります", "頂けますと幸いです", "いただきたく存じます", "お願いできればと思います", "ようお願い申し上げます", "ようお願いいたします",
    "ようお願い致します", "ようお願いします",
];
#[rustfmt::skip]
pub(super) const JA_REQUEST_CONTAINS: &[&str] = &[
    "のほどよろしくお願い", "のほど、よろしくお願い", "のほど宜しくお願い", "のほど、宜しくお願い",
];
#[rustfmt::skip]
pub(super) const JA_BOILER: &[&str] = &[
    "ご査収", "お気軽に", "ご自愛", "ご了承", "ご注意", "ご不明な点", "ご不明点", "ご遠慮なく", "ご覧ください", "ご参照ください",
    "ご覧いただけます", "ご利用ください",
];
#[rustfmt::skip]
pub(super) const JA_COMMIT: &[&str] = &[
    "お送りします", "お送りいたします", "お送り致します", "送ります", "送付します", "送付いたします", "ご連絡します", "ご連絡いたします",
    "ご連絡致します", "連絡します", "確認します", "確認いたします", "確認致します", "対応します", "対応いたします", "対応致します", "共有します",
    "共有いたします", "ご報告します", "ご報告いたします", "報告します", "準備します", "準備いたします", "手配します", "手配いたします", "伺います",
    "参加します", "参加いたします", "提出します", "提出いたします", "ご用意します", "ご用意いたします", "用意します", "お知らせします",
    "お知らせいたします", "作成します", "作成いたします", "修正します", "修正いたします", "調整します", "調整いたします", "回答します", "ご回答します",
    "ご回答いたします", "する予定です", "いたす予定です", "お届けします", "お届けいたします", "進めます", "させていただきます",
];
#[rustfmt::skip]
pub(super) const JA_WITHDRAW: &[&str] = &[
    "解決しました", "自己解決", "不要になりました", "見つかりました", "お騒がせしました",
];
#[rustfmt::skip]
pub(super) const JA_URGENT: &[&str] = &[
    "至急", "緊急", "早急", "急ぎで", "お急ぎ", "本日中", "今日中",
];
#[rustfmt::skip]
pub(super) const JA_NOT_URGENT: &[&str] = &[
    "急ぎません", "急ぎではありません", "急ぎではない", "お手すきの際", "お時間のある時", "お時間のあるときに",
];
#[rustfmt::skip]
pub(super) const JA_PLEASANTRY: &[&str] = &[
    "お世話になっております", "お世話になります", "いつもお世話に", "よろしくお願い", "宜しくお願い", "ありがとうございます", "ありがとうございました",
    "お疲れ様です", "お疲れさまです",
];
/// Time words with their offset in days (`None`: this week, resolved to Friday).
pub(super) const JA_TIMES: &[(&str, Option<i64>)] = &[
    ("本日中", Some(0)),
    ("今日中", Some(0)),
    ("本日", Some(0)),
    ("今日", Some(0)),
    ("明後日", Some(2)),
    ("明日", Some(1)),
    ("今週中", None),
    ("来週中", Some(7)),
    ("来週", Some(7)),
    ("来月", Some(30)),
];
#[rustfmt::skip]
pub(super) const JA_WEEKDAYS: &[&str] = &[
    "月曜", "火曜", "水曜", "木曜", "金曜", "土曜", "日曜",
];

// ---------------------------------------------------------------------------
// Matching

/// FxHash: tokens are short and trusted, SipHash's DoS resistance buys nothing here.
#[derive(Default)]
pub(super) struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for Fx {
    /// Eight bytes at a time (a token is hashed for every word of every sentence);
    /// the map is only ever looked up, never iterated, so the hash values are free.
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        // The last 1..=7 bytes in (possibly overlapping) loads, not through a
        // buffer: copying into one and reading it back stalled on the store.
        let tail = chunks.remainder();
        let n = tail.len();
        let u32_at = |i: usize| {
            u64::from(u32::from_le_bytes(
                tail[i..i + 4].try_into().expect("4 bytes"),
            ))
        };
        let last = match n {
            0 => return,
            1..=3 => {
                u64::from(tail[0]) | u64::from(tail[n / 2]) << 8 | u64::from(tail[n - 1]) << 16
            }
            _ => u32_at(0) | u32_at(n - 4) << 32,
        };
        self.add(last);
    }
    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The most tokens a phrase has after its first.
const MAX_REST: usize = 8;

/// A phrase after its first token, inline: scanning walks every entry for a common
/// first word ("i", "we", "je"), and a `Vec` per entry was a pointer to chase each.
struct Entry<T> {
    rest: [&'static str; MAX_REST],
    len: usize,
    tag: T,
}

impl<T> Entry<T> {
    fn rest(&self) -> &[&'static str] {
        &self.rest[..self.len]
    }
}

pub(super) struct Lexicon<T> {
    map: HashMap<&'static str, Vec<Entry<T>>, BuildHasherDefault<Fx>>,
}

impl<T: Copy> Lexicon<T> {
    fn new() -> Self {
        Lexicon {
            map: HashMap::default(),
        }
    }

    fn add(&mut self, phrase: &'static str, tag: T) {
        let mut toks = tokenize(phrase)
            .into_iter()
            .map(|(a, b)| &phrase[a as usize..b as usize]);
        let Some(first) = toks.next() else { return };
        let mut rest = [""; MAX_REST];
        let mut len = 0;
        for t in toks {
            assert!(len < MAX_REST, "phrase too long: {phrase}");
            rest[len] = t;
            len += 1;
        }
        let entries = self.map.entry(first).or_default();
        entries.push(Entry { rest, len, tag });
        // Longest first, so the first hit at a position is the most specific.
        entries.sort_by_key(|e| std::cmp::Reverse(e.len));
    }

    fn add_all(&mut self, phrases: &[&'static str], tag: T) {
        for p in phrases {
            self.add(p, tag);
        }
    }

    /// Every phrase occurrence among the `n` words, in order of position.
    pub fn scan<'w>(&self, n: usize, word: impl Fn(usize) -> &'w str, out: &mut Vec<Hit<T>>) {
        for i in 0..n {
            let Some(entries) = self.map.get(word(i)) else {
                continue;
            };
            for e in entries {
                let len = e.len;
                if i + len >= n {
                    continue;
                }
                let ok = e
                    .rest()
                    .iter()
                    .enumerate()
                    .all(|(k, p)| *p == "*" || *p == word(i + 1 + k));
                if ok {
                    out.push(Hit {
                        tag: e.tag,
                        start: i,
                        end: i + 1 + len,
                    });
                }
            }
        }
    }
}

pub(super) fn main() -> &'static Lexicon<Tag> {
    static LEX: OnceLock<Lexicon<Tag>> = OnceLock::new();
    LEX.get_or_init(|| {
        let mut l = Lexicon::new();
        l.add_all(ASK, Tag::Ask);
        l.add_all(PLEASE, Tag::Please);
        l.add_all(PLEASE_NOT, Tag::PleaseNot);
        l.add_all(LET_ME_KNOW, Tag::LetMeKnow);
        l.add_all(INDIRECT, Tag::Indirect);
        l.add_all(NEED_YOU, Tag::NeedYou);
        l.add_all(NEED_IF_DUE, Tag::NeedIfDue);
        l.add_all(BOILER, Tag::Boiler);
        l.add_all(PLEASANTRY, Tag::Pleasantry);
        l.add_all(COMMIT, Tag::Commit);
        l.add("let me", Tag::CommitLetMe);
        l.add_all(COMMIT_IF_DUE, Tag::CommitIfDue);
        l.add_all(WITHDRAW, Tag::Withdraw);
        l.add_all(URGENT, Tag::Urgent);
        l.add_all(URGENT_STATEMENT, Tag::UrgentStatement);
        l.add_all(NOT_URGENT, Tag::NotUrgent);
        l.add_all(GREETING, Tag::Greeting);
        l.add_all(CLOSING, Tag::Closing);
        l.add_all(PREP, Tag::Prep);
        l.add_all(SINCE, Tag::Since);
        for &(p, t) in TIMES {
            l.add(p, Tag::Time(t));
        }
        for (d, names) in WEEKDAYS.iter().enumerate() {
            for n in *names {
                l.add(n, Tag::Time(Time::Weekday(d as u8)));
            }
        }
        for (m, names) in MONTHS.iter().enumerate() {
            for n in *names {
                l.add(n, Tag::Month(m as u8 + 1));
            }
        }
        l
    })
}

/// A fixed set of phrases looked for as substrings of a lowercased sentence, all in one
/// pass (Aho-Corasick, built on first use): `str::contains` per phrase builds a searcher
/// per phrase per sentence, and these sets are tested on every sentence.
pub(super) struct Substrings {
    phrases: &'static [&'static str],
    /// The automaton, and whether any phrase is ASCII (an ASCII text holds none of the
    /// others).
    automaton: OnceLock<(AhoCorasick, bool)>,
}

impl Substrings {
    pub const fn new(phrases: &'static [&'static str]) -> Substrings {
        Substrings {
            phrases,
            automaton: OnceLock::new(),
        }
    }

    fn get(&self) -> &(AhoCorasick, bool) {
        self.automaton.get_or_init(|| {
            let ac = AhoCorasick::new(self.phrases).expect("phrase automaton");
            (ac, self.phrases.iter().any(|p| p.is_ascii()))
        })
    }

    /// Whether any of the phrases occurs in `text`; `ascii` says `text` is ASCII.
    pub fn in_text(&self, text: &str, ascii: bool) -> bool {
        let (ac, any_ascii) = self.get();
        (!ascii || *any_ascii) && ac.is_match(text)
    }
}

/// The Japanese phrase lists as [`Substrings`] (`Sentence::contains_any`).
pub(super) static JA_WITHDRAW_ANY: Substrings = Substrings::new(JA_WITHDRAW);
pub(super) static JA_BOILER_ANY: Substrings = Substrings::new(JA_BOILER);
pub(super) static JA_REQUEST_CONTAINS_ANY: Substrings = Substrings::new(JA_REQUEST_CONTAINS);
pub(super) static JA_COMMIT_ANY: Substrings = Substrings::new(JA_COMMIT);
pub(super) static JA_NOT_URGENT_ANY: Substrings = Substrings::new(JA_NOT_URGENT);
pub(super) static JA_URGENT_ANY: Substrings = Substrings::new(JA_URGENT);
pub(super) static JA_PLEASANTRY_ANY: Substrings = Substrings::new(JA_PLEASANTRY);

/// [`AUTOMATED_NOTICES`], searched in every sentence of every message.
pub(super) static AUTOMATED: Substrings = Substrings::new(AUTOMATED_NOTICES);

/// Words that make a date in a sentence a deadline even outside a request.
pub(super) static DEADLINE_TALK: Substrings = Substrings::new(&[
    "deadline",
    "frist",
    "date limite",
    "fecha límite",
    "締め切り",
    "締切",
]);

/// Phrases by which a message says it was sent by a machine, whatever its headers say.
#[rustfmt::skip]
pub(super) const AUTOMATED_NOTICES: &[&str] = &[
    "this is an automated message", "this is an automatically generated", "this email was sent automatically",
    "this message was sent automatically", "do not reply to this email", "do not reply to this message",
    "this mailbox is not monitored", "diese e-mail wurde automatisch", "diese nachricht wurde automatisch",
    "bitte antworten sie nicht auf diese", "ceci est un message automatique", "merci de ne pas y répondre",
    "merci de ne pas répondre", "ne pas répondre à ce", "este es un mensaje automático", "no responda a este",
    "no respondas a este", "このメールは送信専用", "送信専用アドレス", "自動送信されて", "自動配信されて",
];

/// German first-person present forms that promise an action when a time goes with
/// them ("… und gebe sie anschließend an den Einkauf weiter"): after "ich" (-e forms)
/// and after "wir" (-en forms).
#[rustfmt::skip]
pub(super) const DE_PROMISE_ICH: &[&str] = &[
    "gebe", "leite", "schicke", "sende", "rufe", "kläre", "prüfe", "melde", "kümmere", "buche",
    "reserviere", "bereite", "erstelle", "übernehme", "organisiere", "informiere", "frage", "trage",
    "lege", "bringe", "besorge", "hole", "mache", "schaue", "checke", "schreibe", "setze", "liefere",
    "erledige", "passe", "korrigiere", "überarbeite", "aktualisiere",
];
#[rustfmt::skip]
pub(super) const DE_PROMISE_WIR: &[&str] = &[
    "geben", "leiten", "schicken", "senden", "rufen", "klären", "prüfen", "melden", "kümmern",
    "buchen", "reservieren", "bereiten", "erstellen", "übernehmen", "organisieren", "informieren",
    "liefern", "erledigen", "korrigieren", "überarbeiten", "aktualisieren",
];
/// Modal verbs: "dann kann ich … reservieren" is an ability, not a promise.
#[rustfmt::skip]
pub(super) const DE_MODALS: &[&str] = &[
    "kann", "könnte", "können", "könnten", "muss", "müsste", "müssen", "würde", "würden", "möchte",
    "möchten", "sollte", "sollten", "will", "wollen", "darf", "dürfen",
];
#[rustfmt::skip]
pub(super) const DE_WHEN: &[&str] = &[
    "morgen", "heute", "gleich", "sofort", "anschließend", "danach", "nachher", "später", "umgehend",
    "zeitnah", "schnellstmöglich", "demnächst", "bald",
];
/// French first-person present forms used as a promise: always ("je transmets"), or
/// when a time goes with them ("je t'appelle demain").
#[rustfmt::skip]
pub(super) const FR_PROMISE_ALWAYS: &[&str] = &["transmets", "relance", "reviens", "rappelle"];
#[rustfmt::skip]
pub(super) const FR_PROMISE_WHEN: &[&str] = &[
    "appelle", "envoie", "regarde", "vérifie", "prépare", "contacte", "préviens", "confirme", "fais",
    "mets", "passe", "écris", "réponds", "transfère", "note", "organise", "réserve", "cale",
];
#[rustfmt::skip]
pub(super) const FR_WHEN: &[&str] = &[
    "demain", "ce soir", "aujourd'hui", "tout de suite", "rapidement", "dès que", "asap", "au plus vite",
    "cet après midi", "dans la journée", "d' ici",
];

/// Verbs that make "let me …" a promise.
#[rustfmt::skip]
pub(super) const LET_ME_VERBS: &[&str] = &[
    "check", "ask", "look", "find", "confirm", "get", "follow", "talk", "see", "dig", "circle",
    "review", "verify", "loop", "sync", "coordinate", "run", "double", "take", "send", "share",
    "think", "chase", "touch", "reach", "pull", "put", "set", "draft", "work", "sort", "figure",
    "investigate", "connect", "ping", "come", "reply", "respond", "forward", "book", "schedule",
    "make",
];

/// Verbs that open an imperative request ("Send me the deck", "Confirm the address").
#[rustfmt::skip]
pub(super) const IMPERATIVE_VERBS: &[&str] = &[
    "send", "share", "confirm", "review", "sign", "approve", "check", "tell", "forward", "call",
    "ping", "update", "fill", "complete", "submit", "book", "reply", "respond", "answer",
    "grab", "pick", "choose", "decide", "remember", "advise", "schick", "schicke", "schicken",
    "sende", "senden", "envoie", "envoyez", "confirme", "confirmez", "envíame", "mándame",
    "manda", "shoot", "give",
];

/// Words between "I'll" and its verb that say nothing about the promise.
#[rustfmt::skip]
pub(super) const ADVERBS: &[&str] = &[
    "also", "then", "definitely", "certainly", "personally", "still", "just", "probably",
    "happily", "gladly", "quickly", "now", "first", "both", "absolutely", "surely",
];

/// What follows "I'll"/"I will" when it is a state, not a promise ("I'll be out").
pub(super) const NOT_A_PROMISE: &[&[&str]] = &[
    &["be", "out"],
    &["be", "away"],
    &["be", "off"],
    &["be", "offline"],
    &["be", "unavailable"],
    &["be", "available"],
    &["be", "on"],
    &["be", "traveling"],
    &["be", "travelling"],
    &["be", "back"],
    &["be", "happy"],
    &["be", "glad"],
    &["be", "in"],
    &["be", "at"],
    &["be", "able"],
    &["be", "honest"],
    &["need"],
    &["needs"],
    &["have", "to"],
    &["see"],
    &["not"],
    &["never"],
    &["admit"],
    &["say"],
    &["be", "there"],
    &["let", "you", "two"],
    &["let", "you", "both"],
    &["let", "you", "all"],
    &["let", "you", "guys"],
    &["let", "you", "take"],
    &["let", "you", "decide"],
    &["leave", "it"],
    &["leave", "you"],
    &["estar"],
    &["être"],
    &["nicht"],
];

/// Subjects that start a clause of their own inside a sentence ("…, and I'm going to…").
#[rustfmt::skip]
pub(super) const CLAUSE_SUBJECTS: &[&str] = &[
    "i", "i'll", "i'm", "i've", "we", "we'll", "we're", "let", "will", "je", "j'", "nous",
    "ich", "wir", "yo",
];

#[rustfmt::skip]
pub(super) const CONJUNCTIONS: &[&str] = &[
    "and", "but", "so", "et", "mais", "und", "aber", "y", "pero",
];
